//! A standalone database in a pod (`--container POD[/CONTAINER]`, or a `StandaloneDatabase`'s
//! pod/StatefulSet target): looked up read-only, its container must be ready.

use hasteward_k8s::{require_ready, Kube, PodRunner};
use hasteward_model::DbType;

use super::{PodAuth, PodDatabase};
use crate::standalone::HostTarget;
use crate::{Error, Result};

/// The exec runner of `pod`'s container (the given one, else the pod's first), which must be
/// ready.
pub async fn pod_runner(
    kube: &Kube,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
) -> Result<PodRunner> {
    let pod_obj = kube.pod(namespace, pod).await?;
    let container = match container {
        Some(c) => c.to_string(),
        None => pod_obj
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .map(|c| c.name.clone())
            .ok_or_else(|| Error::Usage(format!("pod {namespace}/{pod} has no containers")))?,
    };
    require_ready(&pod_obj, &container)?;
    Ok(PodRunner::new(kube, namespace, pod, &container))
}

/// Resolves `pod` (container: the given one, else the pod's first) in `namespace`.
pub async fn resolve(
    kube: &Kube,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
    db: DbType,
    user: Option<&str>,
    auth: PodAuth,
) -> Result<PodDatabase<PodRunner>> {
    let user = user.unwrap_or_else(|| HostTarget::default_user(db));
    if user.is_empty() || user.starts_with('-') || user.contains(['\n', '\r', '\0']) {
        return Err(Error::Usage(format!("invalid database user `{user}`")));
    }
    let runner = pod_runner(kube, namespace, pod, container).await?;
    let location = runner.location();
    Ok(PodDatabase::new(runner, location, db, user, auth))
}
