//! Building the client and bounding every call in time.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::{Error, Result};

/// Where the client's configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// A kubeconfig file; otherwise `KUBECONFIG`, `~/.kube/config`, then the in-cluster service
    /// account.
    pub kubeconfig: Option<PathBuf>,
    /// A context of the kubeconfig other than its current one.
    pub context: Option<String>,
    /// Limit for each API call (not for exec streams). Default 30 s.
    pub request_timeout: Option<Duration>,
}

/// A connected client plus what messages need to name.
#[derive(Clone)]
pub struct Kube {
    /// The kube client.
    pub client: Client,
    /// The API server URL, for messages.
    pub server: String,
    /// The namespace of the kubeconfig context (or the pod's, in-cluster).
    pub default_namespace: String,
    request_timeout: Duration,
}

impl std::fmt::Debug for Kube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kube")
            .field("server", &self.server)
            .finish()
    }
}

/// How long to wait for a TCP connection to the API server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds a client. No request is made here; the first call reports an unreachable server.
pub async fn connect(opts: &ClientOptions) -> Result<Kube> {
    let kube_opts = KubeConfigOptions {
        context: opts.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config_err = |e: &dyn std::fmt::Display| Error::Config {
        detail: e.to_string(),
    };
    let mut config = match (&opts.kubeconfig, &opts.context) {
        (Some(path), _) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| Error::Config {
                detail: format!("reading {}: {e}", path.display()),
            })?;
            Config::from_custom_kubeconfig(kc, &kube_opts)
                .await
                .map_err(|e| config_err(&e))?
        }
        (None, Some(_)) => Config::from_kubeconfig(&kube_opts)
            .await
            .map_err(|e| config_err(&e))?,
        (None, None) => Config::infer().await.map_err(|e| config_err(&e))?,
    };
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    // Exec streams can be silent for a long time (a restore into a busy database); calls are
    // bounded by `request_timeout` instead, and exec liveness by the stall timeout.
    config.read_timeout = None;
    let server = config.cluster_url.to_string();
    let default_namespace = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(|e| Error::Config {
        detail: e.to_string(),
    })?;
    Ok(Kube {
        client,
        server,
        default_namespace,
        request_timeout: opts.request_timeout.unwrap_or(Duration::from_secs(30)),
    })
}

/// What a call was about, to turn `kube::Error`s into messages that name the object.
#[derive(Clone, Copy)]
pub(crate) struct Target<'a> {
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

impl Kube {
    /// Runs one API call with the request timeout, mapping errors.
    pub(crate) async fn call<T>(
        &self,
        action: &str,
        target: Target<'_>,
        fut: impl Future<Output = kube::Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.request_timeout, fut).await {
            Err(_) => Err(Error::Unreachable {
                server: self.server.clone(),
                detail: format!(
                    "{action} timed out after {} s",
                    self.request_timeout.as_secs()
                ),
            }),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.map_error(action, target, e)),
        }
    }

    pub(crate) fn map_error(&self, action: &str, target: Target<'_>, e: kube::Error) -> Error {
        match e {
            kube::Error::Api(status) if status.code == 404 => Error::NotFound {
                kind: target.kind.to_string(),
                namespace: target.namespace.to_string(),
                name: target.name.to_string(),
            },
            kube::Error::Api(status) if status.code >= 500 => Error::Unreachable {
                server: self.server.clone(),
                detail: format!("{action}: {} (HTTP {})", status.message, status.code),
            },
            kube::Error::Api(status) => Error::Api {
                action: format!(
                    "{action} {} {}/{}",
                    target.kind, target.namespace, target.name
                ),
                message: status.message.clone(),
                code: status.code,
            },
            other => Error::Unreachable {
                server: self.server.clone(),
                detail: format!("{action}: {}", error_chain(&other)),
            },
        }
    }
}

/// An error and its sources on one line (hyper hides the useful part in a source).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cur = s.source();
    }
    text
}
