//! The hasteward command lines the report suggests. Repairs are always suggested with
//! `--dry-run`: the user sees the plan before anything changes.

use super::input::ClusterView;

/// Builds command lines for one cluster.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Commands<'a> {
    cluster: &'a str,
    namespace: &'a str,
}

impl<'a> Commands<'a> {
    pub(crate) fn new(cluster: &'a ClusterView) -> Self {
        Self {
            cluster: &cluster.name,
            namespace: &cluster.namespace,
        }
    }

    fn target(&self) -> String {
        format!("-e galera -c {} -n {}", self.cluster, self.namespace)
    }

    /// Restart or reseed one node, as the repair plan decides.
    pub(crate) fn repair_instance(&self, node: &str) -> String {
        format!(
            "hasteward repair {} --instance {node} --dry-run",
            self.target()
        )
    }

    /// Bootstrap a new Primary component from `leader`.
    pub(crate) fn bootstrap(&self, leader: &str) -> String {
        format!(
            "hasteward repair {} --bootstrap {leader} --dry-run",
            self.target()
        )
    }

    /// Escrow what the cluster serves before anyone decides on a split brain.
    pub(crate) fn escrow(&self) -> String {
        format!("hasteward backup {}", self.target())
    }

    /// Triage again: once unread nodes can be read.
    pub(crate) fn triage(&self) -> String {
        format!("hasteward triage {}", self.target())
    }

    /// Triage again, allowed to run `mariadbd --wsrep-recover` in the stopped nodes.
    pub(crate) fn recover_positions(&self) -> String {
        format!("hasteward triage {} --recover-positions", self.target())
    }
}
