//! `hasteward serve`: flags into [`hasteward_operator::serve::ServeOptions`], then the operator
//! until SIGTERM / Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use hasteward_engines::Error;
use hasteward_exec::CancellationToken;
use hasteward_model::ExitCode;
use hasteward_operator::cache::WatchScope;
use hasteward_operator::clock::SystemClock;
use hasteward_operator::http::{bind, Health};
use hasteward_operator::metrics::Metrics;
use hasteward_operator::runner::RunEnv;
use hasteward_operator::serve::{serve, ServeOptions};

use crate::cli::{Cli, ServeArgs};
use crate::commands::usage;

/// Runs the operator.
pub async fn run(
    cli: &Cli,
    a: &ServeArgs,
    shutdown: &CancellationToken,
) -> Result<ExitCode, Error> {
    if let Some(ns) = &a.watch_namespace {
        hasteward_model::validate_name("--watch-namespace", ns).map_err(usage)?;
    }
    if let Some(name) = &a.notify_secret {
        hasteward_model::validate_name("--notify-secret", name).map_err(usage)?;
    }
    if a.concurrency == 0 {
        return Err(usage("--concurrency must be at least 1"));
    }
    which::which(&cli.restic_bin).map_err(|_| {
        Error::Restic(hasteward_restic::Error::NotInstalled {
            bin: cli.restic_bin.clone(),
        })
    })?;
    let kube = crate::targets::kube(cli).await?;
    let lease_namespace = a
        .lease_namespace
        .clone()
        .or_else(|| {
            std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| kube.default_namespace.clone());
    let identity = a.identity.clone().unwrap_or_else(|| {
        let host = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "localhost".into());
        format!("{host}:{}", std::process::id())
    });
    let listener = bind(a.listen)
        .await
        .map_err(|e| usage(format!("cannot listen on {} (--listen): {e}", a.listen)))?;
    let opts = ServeOptions {
        scope: WatchScope {
            namespace: a.watch_namespace.clone(),
            cnpg: !a.no_cnpg,
            mariadb: !a.no_mariadb,
        },
        lease_namespace,
        lease_name: a.lease_name.clone(),
        identity,
        concurrency: a.concurrency,
        run_env: RunEnv {
            kube: kube.clone(),
            restic_bin: cli.restic_bin.clone(),
            lock_wait: Duration::from_secs(a.lock_wait),
            stall_timeout: (a.stall_timeout > 0).then(|| Duration::from_secs(a.stall_timeout)),
            queue: Default::default(),
        },
        shutdown_grace: Duration::from_secs(a.shutdown_grace),
        election_retry: Duration::from_secs(a.election_retry.max(1)),
        notify_secret: a.notify_secret.clone(),
    };
    tracing::info!("serving /metrics, /livez, /readyz on {}", a.listen);
    serve(
        kube,
        opts,
        listener,
        Arc::new(SystemClock),
        Arc::new(Metrics::new()),
        Arc::new(Health::default()),
        shutdown.clone(),
    )
    .await
    .map_err(|e| match e {
        hasteward_operator::serve::ServeError::Http(io) => {
            Error::io("serving /metrics and health", io)
        }
        hasteward_operator::serve::ServeError::Notify(io) => {
            Error::io("setting up webhook notifications", io)
        }
    })?;
    Ok(ExitCode::Success)
}
