//! Turning flags into a resolved target: a host over TCP, a database in a pod, or a CNPG
//! cluster's primary. Kubernetes targets are looked up here (read-only), so a dry run shows the
//! real pod and an unreachable cluster fails before anything else happens.

use hasteward_engines::pod::{cnpg, galera, PodAuth, PodDatabase};
use hasteward_engines::standalone::HostEndpoint;
use hasteward_engines::Error;
use hasteward_k8s::{connect, ClientOptions, Kube, PodRunner};
use hasteward_model::{DbType, Engine};

use crate::cli::{Cli, HostArgs, PodArgs};
use crate::commands::{host_target, usage};

/// A target ready for the flows.
pub enum Resolved {
    /// A server reached over TCP from here.
    Host(HostEndpoint),
    /// A server in a pod (standalone in a pod, or a Galera node).
    Pod(PodDatabase<PodRunner>),
    /// A CNPG cluster's primary (restores fence the replicas).
    Cnpg {
        /// The client, for fencing.
        kube: Kube,
        /// The cluster and its primary.
        target: Box<cnpg::CnpgTarget>,
    },
}

/// Runs `$body` with `$t` bound to the resolved target as `&impl Target`.
macro_rules! with_target {
    ($resolved:expr, $t:ident => $body:expr) => {
        match $resolved {
            $crate::targets::Resolved::Host($t) => $body,
            $crate::targets::Resolved::Pod($t) => $body,
            $crate::targets::Resolved::Cnpg { target, .. } => {
                let $t = &target.database;
                $body
            }
        }
    };
}
pub(crate) use with_target;

impl Resolved {
    /// Where the target is, for messages.
    pub fn location(&self) -> String {
        use hasteward_engines::target::Target;
        with_target!(self, t => t.location())
    }
}

pub(crate) async fn kube(cli: &Cli) -> Result<Kube, Error> {
    Ok(connect(&ClientOptions {
        kubeconfig: cli.kubeconfig.clone(),
        context: cli.context.clone(),
        request_timeout: None,
    })
    .await?)
}

/// Splits `POD[/CONTAINER]`.
fn pod_and_container(spec: &str) -> Result<(String, Option<String>), Error> {
    let (pod, container) = match spec.split_once('/') {
        Some((p, c)) => (p, Some(c)),
        None => (spec, None),
    };
    hasteward_model::validate_name("pod (--container)", pod).map_err(usage)?;
    if let Some(c) = container {
        hasteward_model::validate_name("container (--container POD/CONTAINER)", c)
            .map_err(usage)?;
    }
    Ok((pod.to_string(), container.map(String::from)))
}

/// Resolves the flags of one backup set into a target.
pub async fn resolve(
    cli: &Cli,
    engine: Engine,
    namespace: &str,
    cluster: &str,
    db: DbType,
    host: &HostArgs,
    pod: &PodArgs,
) -> Result<Resolved, Error> {
    match engine {
        Engine::Cnpg => {
            let kube = kube(cli).await?;
            let target = cnpg::resolve(&kube, namespace, cluster).await?;
            Ok(Resolved::Cnpg {
                kube,
                target: Box::new(target),
            })
        }
        Engine::Galera => {
            let kube = kube(cli).await?;
            Ok(Resolved::Pod(
                galera::resolve(&kube, namespace, cluster).await?,
            ))
        }
        Engine::Standalone => match &pod.container {
            None => {
                if pod.secret_name.is_some() || pod.secret_key.is_some() {
                    return Err(usage(
                        "--secret-name/--secret-key apply to pod targets: add --container POD[/CONTAINER]",
                    ));
                }
                let t = host_target(db, host)?;
                Ok(Resolved::Host(HostEndpoint::prepare(&t)?))
            }
            Some(spec) => {
                if host.host.is_some() || host.port.is_some() || host.db_password_file.is_some() {
                    return Err(usage(
                        "--container (a pod target) cannot be combined with --host/--port/--db-password-file (a host target); pick one",
                    ));
                }
                let (pod_name, container) = pod_and_container(spec)?;
                let kube = kube(cli).await?;
                let auth = match (&pod.secret_name, &pod.secret_key) {
                    (Some(name), Some(key)) => PodAuth::Password(
                        kube.secret_value(namespace, name, key)
                            .await?
                            .expose()
                            .to_string(),
                    ),
                    (None, None) => PodAuth::Container,
                    _ => return Err(usage("--secret-name and --secret-key go together")),
                };
                Ok(Resolved::Pod(
                    hasteward_engines::pod::standalone::resolve(
                        &kube,
                        namespace,
                        &pod_name,
                        container.as_deref(),
                        db,
                        host.db_user.as_deref(),
                        auth,
                    )
                    .await?,
                ))
            }
        },
        Engine::Vault | Engine::Vmbackup => Err(usage(format!(
            "engine `{}` is not available in this build yet",
            engine.as_str()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_specs_split_and_validate() {
        assert_eq!(pod_and_container("db-0").unwrap(), ("db-0".into(), None));
        assert_eq!(
            pod_and_container("db-0/mongo").unwrap(),
            ("db-0".into(), Some("mongo".into()))
        );
        assert!(pod_and_container("db-0/").is_err());
        assert!(pod_and_container("Db;rm").is_err());
    }
}
