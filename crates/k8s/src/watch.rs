//! Waiting on one object by watching it: the one loop behind "until the pod is Ready", "until
//! it is gone", "until the helper has finished" and "until the StatefulSet is gone".

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, WatchEvent, WatchParams};

/// Reads pod `name` and then watches it until `check` returns `Some` (given the pod, or `None`
/// when there is none or it was deleted), or `timeout` passes (`None`). A watch that ends
/// (server timeout, expired version, error) is followed by a fresh read, so nothing is missed.
pub(crate) async fn watch_pod<T>(
    api: &Api<Pod>,
    name: &str,
    timeout: Duration,
    check: impl FnMut(Option<&Pod>) -> Option<T>,
) -> Option<T> {
    watch_object(api, name, timeout, check).await
}

/// [`watch_pod`] for any namespaced kind.
pub(crate) async fn watch_object<K, T>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    mut check: impl FnMut(Option<&K>) -> Option<T>,
) -> Option<T>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let version = match api.get_opt(name).await {
            Ok(object) => {
                if let Some(done) = check(object.as_ref()) {
                    return Some(done);
                }
                object
                    .and_then(|o| o.meta().resource_version.clone())
                    .unwrap_or_else(|| "0".into())
            }
            Err(_) => "0".into(),
        };
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return None;
        }
        let secs = (deadline - now).as_secs().clamp(1, 290) as u32;
        let params = WatchParams::default()
            .fields(&format!("metadata.name={name}"))
            .timeout(secs);
        let Ok(stream) = api.watch(&params, &version).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let mut stream = stream.boxed();
        let until = tokio::time::sleep_until(deadline);
        tokio::pin!(until);
        loop {
            tokio::select! {
                _ = &mut until => break,
                event = stream.try_next() => match event {
                    Ok(Some(WatchEvent::Added(object) | WatchEvent::Modified(object))) => {
                        if let Some(done) = check(Some(&object)) {
                            return Some(done);
                        }
                    }
                    Ok(Some(WatchEvent::Deleted(_))) => {
                        if let Some(done) = check(None) {
                            return Some(done);
                        }
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}
