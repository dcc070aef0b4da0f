//! Reading one key of a Secret. The value is held in a type that never prints itself.

use k8s_openapi::api::core::v1::Secret as K8sSecret;
use kube::api::Api;

use crate::client::Target;
use crate::{Error, Kube, Result};

/// A secret value. `Debug` and `Display` are redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for writing into a credential file or stream. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Kube {
    /// Reads `key` of Secret `namespace/name` (first line, trailing newline removed).
    pub async fn secret_value(&self, namespace: &str, name: &str, key: &str) -> Result<Secret> {
        let api: Api<K8sSecret> = Api::namespaced(self.client.clone(), namespace);
        let secret = self
            .call(
                "get secret",
                Target {
                    kind: "secret",
                    namespace,
                    name,
                },
                api.get(name),
            )
            .await?;
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|s| s.clone().into_bytes())
            })
            .ok_or_else(|| Error::Resource {
                kind: "secret".into(),
                namespace: namespace.into(),
                name: name.into(),
                detail: format!(
                    "has no key `{key}` (keys: {})",
                    secret
                        .data
                        .as_ref()
                        .map(|d| d.keys().cloned().collect::<Vec<_>>().join(", "))
                        .unwrap_or_default()
                ),
            })?;
        let text = String::from_utf8(bytes).map_err(|_| Error::Resource {
            kind: "secret".into(),
            namespace: namespace.into(),
            name: name.into(),
            detail: format!("key `{key}` is not UTF-8 text"),
        })?;
        let value = text.trim_end_matches(['\r', '\n']);
        if value.contains(['\n', '\r', '\0']) {
            return Err(Error::Resource {
                kind: "secret".into(),
                namespace: namespace.into(),
                name: name.into(),
                detail: format!(
                    "key `{key}` holds more than one line; a password must be one line"
                ),
            });
        }
        Ok(Secret::new(value))
    }

    /// Every key of a Secret as text, for environment variables (backend credentials). Keys
    /// that are not valid variable names or values that are not UTF-8 are refused by name.
    pub async fn secret_env(&self, namespace: &str, name: &str) -> Result<Vec<(String, Secret)>> {
        let api: Api<K8sSecret> = Api::namespaced(self.client.clone(), namespace);
        let target = Target {
            kind: "secret",
            namespace,
            name,
        };
        let secret = self.call("get secret", target, api.get(name)).await?;
        let bad = |detail: String| Error::Resource {
            kind: "secret".into(),
            namespace: namespace.into(),
            name: name.into(),
            detail,
        };
        let mut out = Vec::new();
        let data = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0));
        let strings = secret
            .string_data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()));
        for (key, bytes) in data.chain(strings) {
            let valid_name = !key.is_empty()
                && !key.starts_with(|c: char| c.is_ascii_digit())
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_name {
                return Err(bad(format!(
                    "key `{key}` is not an environment variable name (letters, digits, `_`)"
                )));
            }
            let value = String::from_utf8(bytes)
                .map_err(|_| bad(format!("key `{key}` is not UTF-8 text")))?;
            if value.contains('\0') {
                return Err(bad(format!("key `{key}` contains a NUL byte")));
            }
            out.push((key, Secret::new(value)));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }
}
