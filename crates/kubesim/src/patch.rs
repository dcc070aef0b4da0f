//! Patch application (RFC 7386 merge patch and RFC 6902 JSON patch). Strategic
//! merge and server-side apply are approximated by merge patch, which is
//! enough for the flat patches hasteward sends.

use serde_json::{Map, Value};

/// The patch flavours the API accepts, chosen by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json` (treated as merge patch)
    Strategic,
    /// `application/json-patch+json`
    Json,
    /// `application/apply-patch+yaml` (treated as merge patch; creates if missing)
    Apply,
}

impl PatchKind {
    /// Recognise the patch type from a `Content-Type` header value.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let ct = ct.split(';').next().unwrap_or("").trim();
        match ct {
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Some(PatchKind::Apply)
            }
            _ => None,
        }
    }
}

/// Apply an RFC 7386 merge patch in place: objects merge recursively, `null`
/// deletes a key, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_map) = target else {
        return;
    };
    for (key, value) in patch_map {
        if value.is_null() {
            target_map.remove(key);
        } else {
            let slot = target_map.entry(key.clone()).or_insert(Value::Null);
            merge_patch(slot, value);
        }
    }
}

/// Apply an RFC 6902 JSON patch (add, remove, replace, move, copy, test).
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let ops = patch
        .as_array()
        .ok_or_else(|| "json patch must be an array of operations".to_string())?;
    for (i, op) in ops.iter().enumerate() {
        apply_op(target, op).map_err(|e| format!("json patch operation {i}: {e}"))?;
    }
    Ok(())
}

fn apply_op(doc: &mut Value, op: &Value) -> Result<(), String> {
    let name = op
        .get("op")
        .and_then(Value::as_str)
        .ok_or("missing \"op\"")?;
    let path = op
        .get("path")
        .and_then(Value::as_str)
        .ok_or("missing \"path\"")?;
    let value = || op.get("value").cloned().ok_or("missing \"value\"");
    let from = || {
        op.get("from")
            .and_then(Value::as_str)
            .ok_or("missing \"from\"")
    };
    match name {
        "add" => add(doc, path, value()?),
        "remove" => remove(doc, path).map(drop),
        "replace" => {
            let v = value()?;
            let slot = doc
                .pointer_mut(path)
                .ok_or_else(|| format!("path {path} does not exist"))?;
            *slot = v;
            Ok(())
        }
        "move" => {
            let v = remove(doc, from()?)?;
            add(doc, path, v)
        }
        "copy" => {
            let v = doc
                .pointer(from()?)
                .cloned()
                .ok_or_else(|| "copy source does not exist".to_string())?;
            add(doc, path, v)
        }
        "test" => {
            let expected = value()?;
            match doc.pointer(path) {
                Some(actual) if *actual == expected => Ok(()),
                _ => Err(format!("test failed at {path}")),
            }
        }
        other => Err(format!("unsupported op {other:?}")),
    }
}

/// Split a JSON pointer into its parent pointer and the unescaped last token.
fn split_pointer(path: &str) -> Result<(&str, String), String> {
    if path.is_empty() {
        return Err("cannot operate on the whole document".into());
    }
    let idx = path
        .rfind('/')
        .ok_or_else(|| format!("invalid pointer {path}"))?;
    let token = path[idx + 1..].replace("~1", "/").replace("~0", "~");
    Ok((&path[..idx], token))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, token) = split_pointer(path)?;
    let parent = doc
        .pointer_mut(parent)
        .ok_or_else(|| format!("parent of {path} does not exist"))?;
    match parent {
        Value::Object(map) => {
            map.insert(token, value);
            Ok(())
        }
        Value::Array(items) => {
            if token == "-" {
                items.push(value);
                return Ok(());
            }
            let i: usize = token
                .parse()
                .map_err(|_| format!("invalid array index {token}"))?;
            if i > items.len() {
                return Err(format!("array index {i} out of bounds"));
            }
            items.insert(i, value);
            Ok(())
        }
        _ => Err(format!("parent of {path} is not a container")),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, token) = split_pointer(path)?;
    let parent = doc
        .pointer_mut(parent)
        .ok_or_else(|| format!("parent of {path} does not exist"))?;
    match parent {
        Value::Object(map) => map
            .remove(&token)
            .ok_or_else(|| format!("path {path} does not exist")),
        Value::Array(items) => {
            let i: usize = token
                .parse()
                .map_err(|_| format!("invalid array index {token}"))?;
            if i >= items.len() {
                return Err(format!("array index {i} out of bounds"));
            }
            Ok(items.remove(i))
        }
        _ => Err(format!("parent of {path} is not a container")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut doc, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}}));
        let mut doc = json!({"a": [1, 2]});
        merge_patch(&mut doc, &json!({"a": [3], "n": {"x": null, "y": 1}}));
        assert_eq!(doc, json!({"a": [3], "n": {"y": 1}}));
    }

    #[test]
    fn json_patch_ops() {
        let mut doc = json!({"a": {"b": [1, 2]}, "x/y": 1});
        json_patch(
            &mut doc,
            &json!([
                {"op": "test", "path": "/a/b/0", "value": 1},
                {"op": "add", "path": "/a/b/-", "value": 3},
                {"op": "add", "path": "/a/b/0", "value": 0},
                {"op": "replace", "path": "/x~1y", "value": 2},
                {"op": "remove", "path": "/a/b/1"},
                {"op": "copy", "from": "/x~1y", "path": "/c"},
                {"op": "move", "from": "/c", "path": "/d"},
            ]),
        )
        .unwrap();
        assert_eq!(doc, json!({"a": {"b": [0, 2, 3]}, "x/y": 2, "d": 2}));
        let err = json_patch(&mut doc, &json!([{"op": "test", "path": "/d", "value": 5}]));
        assert!(err.is_err());
    }
}
