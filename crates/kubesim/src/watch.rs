//! `?watch=true`: a chunked stream of JSON event lines, fed from the store's
//! history (when resuming from a resourceVersion) and its broadcast channel,
//! so kube-runtime's list-then-watch loop works unchanged.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use crate::rest::{Query, ResourcePath};
use crate::status::ApiError;
use crate::store::{Selector, WatchEvent};
use crate::{lock, Shared};

/// Watches without `timeoutSeconds` end after this long (the real API picks 30–60 min).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

struct Filter {
    rp: ResourcePath,
    selector: Selector,
}

impl Filter {
    fn matches(&self, event: &WatchEvent) -> bool {
        event.resource == self.rp.resource
            && (self.rp.namespace.is_none()
                || event
                    .object
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    == self.rp.namespace.as_deref())
            && self.selector.matches(&event.object)
    }
}

fn line(event_type: &str, object: &Value) -> Bytes {
    let mut text = json!({"type": event_type, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}

/// Serve a watch on the collection `rp`.
pub(crate) fn watch(
    shared: &Shared,
    rp: &ResourcePath,
    query: &Query,
) -> Result<Response, ApiError> {
    let selector = Selector::parse(query.get("labelSelector"), query.get("fieldSelector"))?;
    let since = match query.get("resourceVersion") {
        None | Some("") | Some("0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        ),
    };
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let deadline = Instant::now() + timeout;
    let filter = Filter {
        rp: rp.clone(),
        selector,
    };
    let send_initial = since.is_none() || query.flag("sendInitialEvents");

    let mut initial: Vec<Bytes> = Vec::new();
    let subscription = {
        let store = lock(&shared.store);
        if send_initial {
            for obj in store.list(&rp.resource, rp.namespace.as_deref(), &filter.selector) {
                initial.push(line("ADDED", &obj));
            }
            if query.flag("sendInitialEvents") {
                let bookmark = json!({
                    "kind": store.kind_of(&rp.resource),
                    "apiVersion": rp.resource.api_version(),
                    "metadata": {
                        "resourceVersion": store.resource_version().to_string(),
                        "annotations": {"k8s.io/initial-events-end": "true"},
                    },
                });
                initial.push(line("BOOKMARK", &bookmark));
            }
        }
        // Under the same lock as the snapshot: no event is lost or duplicated.
        store.subscribe(if send_initial { None } else { since })
    };
    let (replay, receiver) = match subscription {
        Ok(s) => s,
        Err(floor) => {
            let err = ApiError::new(
                410,
                "Expired",
                format!(
                    "too old resource version: {} ({floor})",
                    since.unwrap_or_default()
                ),
            );
            initial.push(line("ERROR", &err.to_status()));
            return Ok(stream_response(futures::stream::iter(initial).boxed()));
        }
    };
    initial.extend(
        replay
            .iter()
            .filter(|e| filter.matches(e))
            .map(|e| line(e.event_type, &e.object)),
    );
    let live = futures::stream::unfold(
        (receiver, filter),
        move |(mut receiver, filter)| async move {
            loop {
                match tokio::time::timeout_at(deadline, receiver.recv()).await {
                    Err(_) | Ok(Err(RecvError::Closed)) | Ok(Err(RecvError::Lagged(_))) => {
                        return None
                    }
                    Ok(Ok(event)) if filter.matches(&event) => {
                        let bytes = line(event.event_type, &event.object);
                        return Some((bytes, (receiver, filter)));
                    }
                    Ok(Ok(_)) => {}
                }
            }
        },
    );
    Ok(stream_response(
        futures::stream::iter(initial).chain(live).boxed(),
    ))
}

fn stream_response(stream: futures::stream::BoxStream<'static, Bytes>) -> Response {
    let body = Body::from_stream(stream.map(Ok::<_, Infallible>));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}
