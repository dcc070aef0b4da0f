//! Raw observations shared by both engines' inputs: what the collector saw of a pod, a volume,
//! and a command's output. The engines' `*Input` structs are built from these.

use serde::Serialize;

/// A pod, as read from the API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodView {
    /// `status.phase` (`Running`, `Pending`, …).
    pub phase: String,
    /// Whether the database container (`postgres` / `mariadb`) is Ready.
    pub ready: bool,
    /// Restart count of the database container.
    pub restarts: u32,
    /// `spec.nodeName`.
    pub node: Option<String>,
}

impl PodView {
    /// Running (whether or not Ready).
    pub fn is_running(&self) -> bool {
        self.phase == "Running"
    }

    /// Running but the database container is not Ready (crash-looping or still starting).
    pub fn is_crashloop(&self) -> bool {
        self.is_running() && !self.ready
    }
}

/// The data volume (PVC) of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "state", content = "detail")]
pub enum VolumeState {
    /// Bound.
    Bound,
    /// The PVC does not exist (a genuine NotFound): no data.
    Missing,
    /// Exists in another phase (`Pending`, `Lost`, …): may hold data.
    Other(String),
    /// Could not be read (API error): may hold data.
    Unknown(String),
}

/// The outcome of one command run in (or about) an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "value")]
pub enum Observed {
    /// The command ran and printed this (stdout).
    Output(String),
    /// The command could not run or failed; the reason (stderr tail, exec error).
    Failed(String),
    /// Not attempted, and why (pod not running, not allowed by the user, …).
    NotAttempted(String),
}

impl Observed {
    /// The output, if the command ran.
    pub fn output(&self) -> Option<&str> {
        match self {
            Self::Output(s) => Some(s),
            _ => None,
        }
    }

    /// Why there is no output (empty when there is).
    pub fn reason(&self) -> &str {
        match self {
            Self::Output(_) => "",
            Self::Failed(r) | Self::NotAttempted(r) => r,
        }
    }
}
