//! `/metrics`, `/livez`, `/readyz`.
//!
//! - live: the main loop has made progress within [`LIVENESS_WINDOW`] (a wedged loop gets the
//!   pod restarted; a slow backup does not, since runs are separate tasks).
//! - ready: the API server answered recently, and this replica is the leader or a standby
//!   whose caches are synced (so it can take over at once).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use hasteward_exec::CancellationToken;

use crate::metrics::Metrics;

/// How stale the main loop's heartbeat may be before `/livez` fails.
pub const LIVENESS_WINDOW: i64 = 180;
/// How stale the last successful API call may be before `/readyz` fails.
pub const API_WINDOW: i64 = 120;

/// Shared health state.
#[derive(Debug, Default)]
pub struct Health {
    heartbeat: AtomicI64,
    api_ok: AtomicI64,
    synced: AtomicBool,
    leader: AtomicBool,
}

impl Health {
    /// The main loop made progress.
    pub fn beat(&self) {
        self.heartbeat
            .store(Utc::now().timestamp(), Ordering::SeqCst);
    }
    /// An API call succeeded.
    pub fn api_ok(&self) {
        self.api_ok.store(Utc::now().timestamp(), Ordering::SeqCst);
    }
    /// The caches hold a full list of every watched kind.
    pub fn set_synced(&self, synced: bool) {
        self.synced.store(synced, Ordering::SeqCst);
    }
    /// This replica leads (or not).
    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::SeqCst);
    }
    /// Whether this replica leads.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }
    /// Why it is not live, if it is not.
    pub fn live(&self) -> Result<(), String> {
        let age = Utc::now().timestamp() - self.heartbeat.load(Ordering::SeqCst);
        if age > LIVENESS_WINDOW {
            return Err(format!("the main loop has not run for {age} s"));
        }
        Ok(())
    }
    /// Why it is not ready, if it is not.
    pub fn ready(&self) -> Result<&'static str, String> {
        let age = Utc::now().timestamp() - self.api_ok.load(Ordering::SeqCst);
        if age > API_WINDOW {
            return Err(format!("no successful API call for {age} s"));
        }
        if !self.synced.load(Ordering::SeqCst) {
            return Err("caches not synced yet".into());
        }
        Ok(if self.is_leader() {
            "leader"
        } else {
            "standby"
        })
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// Serves the endpoints on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(s): State<AppState>| async move {
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    s.metrics.render(),
                )
            }),
        )
        .route(
            "/livez",
            get(|State(s): State<AppState>| async move { answer(s.health.live().map(|_| "ok")) }),
        )
        .route(
            "/readyz",
            get(|State(s): State<AppState>| async move { answer(s.health.ready()) }),
        )
        .with_state(AppState { metrics, health });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

fn answer(r: Result<&'static str, String>) -> (StatusCode, String) {
    match r {
        Ok(s) => (StatusCode::OK, format!("{s}\n")),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

/// Binds the address (port 0 picks a free one).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}
