//! Webhook notifications: a generic JSON POST and a Slack-compatible one, on a run's failure,
//! on its recovery after a failure, and when a triage verdict changes. Transitions only: a
//! backup that keeps failing is announced once (the `HastewardBackupFailing` alert covers the
//! rest), not on every schedule.
//!
//! The URLs are secrets (a Slack webhook URL is a credential), so they live in a Secret in the
//! operator's namespace (`--notify-secret NAME`, keys `webhook-url` and/or `slack-url`), read at
//! each notification so a rotation needs no restart. A failed delivery is logged and counted,
//! never fatal.

use std::time::Duration;

use chrono::{DateTime, Utc};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use crate::status::rfc3339;

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// `backup.failed`, `backup.recovered`, `check.failed`, `check.recovered`, `sync.failed`,
    /// `sync.recovered`, `triage.changed`, `repair.succeeded`, `repair.failed`.
    pub kind: &'static str,
    /// What it is about: `standalone/db/pg`, `repository/offsite`.
    pub subject: String,
    /// For humans.
    pub message: String,
    /// When.
    pub time: DateTime<Utc>,
}

impl Notice {
    /// The generic JSON body.
    pub fn generic(&self) -> Value {
        json!({
            "source": "hasteward",
            "kind": self.kind,
            "subject": self.subject,
            "message": self.message,
            "time": rfc3339(self.time),
        })
    }

    /// A Slack incoming-webhook body (also accepted by Mattermost and Rocket.Chat).
    pub fn slack(&self) -> Value {
        let verb = match self.kind {
            "backup.failed" => "backup FAILED",
            "backup.recovered" => "backup recovered",
            "check.failed" => "repository check FAILED",
            "check.recovered" => "repository check recovered",
            "triage.changed" => "triage verdict changed",
            "sync.failed" => "repository copy FAILED",
            "sync.recovered" => "repository copy recovered",
            other => other,
        };
        json!({ "text": format!("hasteward: {verb}: {}\n{}", self.subject, self.message) })
    }
}

/// Whether a run's result is worth a notice, given the previous one: a failure after anything
/// but a failure, or a success after a failure.
pub fn transition(previous: Option<&str>, now_ok: bool) -> Option<bool> {
    let was_failing = matches!(previous, Some("failure" | "failed" | "damaged"));
    match (was_failing, now_ok) {
        (false, false) => Some(false),
        (true, true) => Some(true),
        _ => None,
    }
}

/// Sends notices to the URLs in a Secret.
#[derive(Clone)]
pub struct Notifier {
    kube: hasteward_k8s::Kube,
    secret: Option<(String, String)>,
    client: Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
}

/// Result of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// 2xx.
    Delivered,
    /// Anything else.
    Failed,
}

impl Notifier {
    /// A notifier reading `secret` (namespace, name); `None`: notifications are off.
    pub fn new(
        kube: hasteward_k8s::Kube,
        secret: Option<(String, String)>,
    ) -> std::io::Result<Self> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            kube,
            secret,
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// Sends `notice` to every configured URL; returns one result per URL.
    pub async fn send(&self, notice: &Notice) -> Vec<(&'static str, Delivery)> {
        let Some((namespace, name)) = &self.secret else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, body) in [
            ("webhook-url", notice.generic()),
            ("slack-url", notice.slack()),
        ] {
            let url = match self.kube.secret_value(namespace, name, key).await {
                Ok(u) => u.expose().to_string(),
                Err(hasteward_k8s::Error::Resource { .. }) => continue, // key not set
                Err(e) => {
                    tracing::warn!(
                        "reading the notification secret {namespace}/{name} failed: {e}"
                    );
                    out.push((key, Delivery::Failed));
                    continue;
                }
            };
            tracing::debug!("notification {} via {key}: sending", notice.kind);
            let delivered = self.post(&url, &body).await;
            if let Err(e) = &delivered {
                // The URL is a secret: name the key, not the URL.
                tracing::warn!("notification {} via {key} failed: {e}", notice.kind);
            }
            out.push((
                key,
                if delivered.is_ok() {
                    Delivery::Delivered
                } else {
                    Delivery::Failed
                },
            ));
        }
        out
    }

    async fn post(&self, url: &str, body: &Value) -> Result<(), String> {
        let req = hyper::Request::post(url)
            .header("content-type", "application/json")
            .header(
                "user-agent",
                concat!("hasteward/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| format!("invalid URL: {e}"))?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .map_err(|_| "no answer within 10 s".to_string())?
            .map_err(|e| e.to_string())?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", resp.status()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transitions_are_announced() {
        assert_eq!(transition(None, false), Some(false));
        assert_eq!(transition(Some("success"), false), Some(false));
        assert_eq!(transition(Some("failure"), false), None);
        assert_eq!(transition(Some("failure"), true), Some(true));
        assert_eq!(transition(Some("damaged"), true), Some(true));
        assert_eq!(transition(Some("success"), true), None);
        assert_eq!(transition(None, true), None);
    }

    #[test]
    fn payloads_name_kind_subject_and_message() {
        let n = Notice {
            kind: "backup.failed",
            subject: "standalone/db/pg".into(),
            message: "repository local: wrong password".into(),
            time: DateTime::parse_from_rfc3339("2026-11-23T02:00:05Z")
                .unwrap()
                .with_timezone(&Utc),
        };
        assert_eq!(
            n.generic(),
            json!({"source": "hasteward", "kind": "backup.failed", "subject": "standalone/db/pg",
                   "message": "repository local: wrong password", "time": "2026-11-23T02:00:05Z"})
        );
        assert_eq!(
            n.slack()["text"],
            "hasteward: backup FAILED: standalone/db/pg\nrepository local: wrong password"
        );
    }
}
