//! One operation per cluster: a `coordination.k8s.io/v1` Lease named `hasteward-<cluster>` in the
//! cluster's namespace, held while a repair runs, renewed in the background, and released
//! (deleted, only if still ours) on every path.
//!
//! A lease held by someone else is respected until it expires (its holder stopped renewing:
//! crashed or cut off), then taken over with the lease's `resourceVersion`, so two takers cannot
//! both win.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};

use crate::client::Target;
use crate::{Error, Kube, Result};

/// How long one renewal (read and write) may take.
const RENEW_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a lease lasts without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(60);

/// A held lease. Call [`LeaseGuard::release`] on every path; dropping it only stops renewing
/// (the lease then expires by itself).
#[derive(Debug)]
pub struct LeaseGuard {
    kube: Kube,
    namespace: String,
    name: String,
    identity: String,
    renewer: tokio::task::JoinHandle<()>,
    lost: Arc<AtomicBool>,
}

/// The lease name for a cluster.
pub fn lease_name(cluster: &str) -> String {
    format!("hasteward-{cluster}")
}

/// `repair@host:pid:nanos`: unique per run.
pub fn identity(operation: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{operation}@{host}:{}:{nanos}", std::process::id())
}

/// Whether a lease (as read) is still held: renewed within its duration.
pub fn is_live(lease: &Lease, now: Timestamp) -> bool {
    let Some(spec) = &lease.spec else {
        return false;
    };
    if spec.holder_identity.as_deref().unwrap_or("").is_empty() {
        return false;
    }
    // A lease written without a duration (by another tool) is held for ours, not for 0 s: a
    // missing field must not make a live holder look expired.
    let duration = spec
        .lease_duration_seconds
        .filter(|d| *d > 0)
        .map(i64::from)
        .unwrap_or(LEASE_DURATION.as_secs() as i64);
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return false;
    };
    renewed.0.as_second() + duration > now.as_second()
}

fn spec_for(identity: &str, acquired: Option<MicroTime>) -> LeaseSpec {
    let now = MicroTime(Timestamp::now());
    LeaseSpec {
        holder_identity: Some(identity.to_string()),
        lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
        acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
        renew_time: Some(now),
        ..LeaseSpec::default()
    }
}

impl Kube {
    /// Takes the lease `name` in `namespace` for `identity`, or fails with
    /// [`Error::Busy`] naming the holder.
    pub async fn acquire_lease(
        &self,
        namespace: &str,
        name: &str,
        identity: &str,
    ) -> Result<LeaseGuard> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), namespace);
        let target = Target {
            kind: "lease",
            namespace,
            name,
        };
        let existing = match self.call("get lease", target, api.get(name)).await {
            Ok(l) => Some(l),
            Err(Error::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        match existing {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.to_string()),
                        namespace: Some(namespace.to_string()),
                        labels: Some(
                            [(
                                "app.kubernetes.io/managed-by".to_string(),
                                "hasteward".to_string(),
                            )]
                            .into(),
                        ),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec_for(identity, None)),
                };
                self.call(
                    "create lease",
                    target,
                    api.create(&PostParams::default(), &lease),
                )
                .await
                .map_err(|e| busy_on_conflict(e, name, "another run created it just now"))?;
            }
            Some(mut lease) => {
                let holder = lease
                    .spec
                    .as_ref()
                    .and_then(|s| s.holder_identity.clone())
                    .unwrap_or_default();
                if holder != identity && is_live(&lease, Timestamp::now()) {
                    let until = lease
                        .spec
                        .as_ref()
                        .and_then(|s| s.renew_time.as_ref())
                        .map(|t| t.0.to_string())
                        .unwrap_or_default();
                    return Err(Error::Busy {
                        what: format!("lease {namespace}/{name}"),
                        holder,
                        detail: format!(
                            "renewed at {until}, held for {} s after each renewal",
                            LEASE_DURATION.as_secs()
                        ),
                    });
                }
                // Expired (or ours): take it over; the resourceVersion makes a race a 409.
                lease.spec = Some(spec_for(identity, None));
                self.call(
                    "take over lease",
                    target,
                    api.replace(name, &PostParams::default(), &lease),
                )
                .await
                .map_err(|e| busy_on_conflict(e, name, "another run took it over just now"))?;
            }
        }
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = tokio::spawn(renew_loop(
            self.clone(),
            namespace.to_string(),
            name.to_string(),
            identity.to_string(),
            lost.clone(),
        ));
        Ok(LeaseGuard {
            kube: self.clone(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            renewer,
            lost,
        })
    }
}

fn busy_on_conflict(e: Error, name: &str, detail: &str) -> Error {
    match e {
        Error::Api { code: 409, .. } => Error::Busy {
            what: format!("lease {name}"),
            holder: "another hasteward run".into(),
            detail: detail.into(),
        },
        other => other,
    }
}

async fn renew_loop(
    kube: Kube,
    namespace: String,
    name: String,
    identity: String,
    lost: Arc<AtomicBool>,
) {
    let api: Api<Lease> = Api::namespaced(kube.client.clone(), &namespace);
    let mut last_renewed = tokio::time::Instant::now();
    let mut wait = LEASE_DURATION / 3;
    loop {
        tokio::time::sleep(wait).await;
        // Each request is bounded: a hung connection must count as a failed renewal, not stall
        // the loop past the lease's expiry.
        let renewed = tokio::time::timeout(RENEW_REQUEST_TIMEOUT, async {
            let mut lease = api.get(&name).await.map_err(|_| Renewal::Failed)?;
            let spec = lease.spec.as_mut().ok_or(Renewal::Taken)?;
            if spec.holder_identity.as_deref() != Some(identity.as_str()) {
                return Err(Renewal::Taken);
            }
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            api.replace(&name, &PostParams::default(), &lease)
                .await
                .map_err(|_| Renewal::Failed)
        })
        .await
        .unwrap_or(Err(Renewal::Failed));
        match renewed {
            Ok(_) => {
                last_renewed = tokio::time::Instant::now();
                wait = LEASE_DURATION / 3;
            }
            Err(Renewal::Taken) => {
                tracing::warn!(lease = %name, "the lease is held by someone else now");
                lost.store(true, Ordering::SeqCst);
                return;
            }
            // A transient failure (the API server restarting, a conflict with our own earlier
            // write) is retried soon; the lease counts as lost only once it may have expired.
            Err(Renewal::Failed) if last_renewed.elapsed() >= LEASE_DURATION * 2 / 3 => {
                tracing::warn!(lease = %name, "could not renew the lease in time; another run may take it over");
                lost.store(true, Ordering::SeqCst);
                return;
            }
            Err(Renewal::Failed) => wait = Duration::from_secs(2),
        }
    }
}

/// Why a renewal did not happen.
enum Renewal {
    /// The request failed; retried.
    Failed,
    /// Someone else holds the lease.
    Taken,
}

impl LeaseGuard {
    /// Whether a renewal failed (another run may have taken over).
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Stops renewing and deletes the lease if it is still ours.
    pub async fn release(mut self) -> Result<()> {
        self.renewer.abort();
        // Wait until the renewer has really stopped: a renewal still in flight would change the
        // resourceVersion under the delete below.
        let _ = (&mut self.renewer).await;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.delete_if_ours().await {
                // A 409: the lease changed between the read and the delete; read it again.
                Err(Error::Api { code: 409, .. }) if attempts < 4 => continue,
                // A transient failure: a lease left behind would block the next run for a
                // minute, so try again shortly.
                Err(e) if attempts < 4 => {
                    tracing::warn!(lease = %self.name, "releasing the lease failed (attempt {attempts}): {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => return other,
            }
        }
    }

    async fn delete_if_ours(&self) -> Result<()> {
        let api: Api<Lease> = Api::namespaced(self.kube.client.clone(), &self.namespace);
        let target = Target {
            kind: "lease",
            namespace: &self.namespace,
            name: &self.name,
        };
        let lease = match self
            .kube
            .call("get lease", target, api.get(&self.name))
            .await
        {
            Ok(l) => l,
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let ours = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(self.identity.as_str());
        if !ours {
            return Ok(());
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: lease.metadata.resource_version.clone(),
                uid: None,
            }),
            ..DeleteParams::default()
        };
        match self
            .kube
            .call("delete lease", target, api.delete(&self.name, &params))
            .await
        {
            Ok(_) | Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed_secs_ago: i64, duration: i32) -> Lease {
        let t = Timestamp::from_second(Timestamp::now().as_second() - renewed_secs_ago).unwrap();
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(duration),
                renew_time: Some(MicroTime(t)),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn live_until_its_duration_after_the_last_renewal() {
        let now = Timestamp::now();
        assert!(is_live(&lease("a", 10, 60), now));
        assert!(!is_live(&lease("a", 61, 60), now));
        assert!(!is_live(&lease("", 1, 60), now));
        assert!(!is_live(&Lease::default(), now));
    }

    #[test]
    fn a_lease_without_a_duration_is_held_for_ours() {
        let now = Timestamp::now();
        let mut l = lease("someone", 30, 0);
        assert!(is_live(&l, now), "0 s must not mean expired");
        l.spec.as_mut().unwrap().lease_duration_seconds = None;
        assert!(is_live(&l, now));
        let stale = lease("someone", LEASE_DURATION.as_secs() as i64 + 1, 0);
        assert!(!is_live(&stale, now));
    }

    #[test]
    fn identities_are_unique_per_run() {
        let a = identity("repair");
        assert!(a.starts_with("repair@"));
        assert_ne!(a, identity("repair"));
    }
}
