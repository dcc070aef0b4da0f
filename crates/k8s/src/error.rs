//! Errors at the crate boundary, each saying what was wrong and what to do.

/// Errors from Kubernetes access.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable kubeconfig or in-cluster configuration.
    #[error("no Kubernetes configuration: {detail} (pass --kubeconfig FILE, set KUBECONFIG, or run in a pod with a service account)")]
    Config {
        /// What the loader said.
        detail: String,
    },
    /// The API server could not be reached or answered with a server error.
    #[error("the Kubernetes API at {server} is unreachable: {detail}")]
    Unreachable {
        /// The API server URL.
        server: String,
        /// The underlying error.
        detail: String,
    },
    /// A named object does not exist.
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        /// Kind, e.g. `Cluster (postgresql.cnpg.io)`.
        kind: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The API refused the request (RBAC, validation).
    #[error("the Kubernetes API refused {action}: {message} (HTTP {code})")]
    Api {
        /// What was attempted.
        action: String,
        /// The API's message.
        message: String,
        /// HTTP status code.
        code: u16,
    },
    /// A pod is not in a state to be used.
    #[error("pod {namespace}/{pod} is not usable: {reason}")]
    PodNotReady {
        /// Namespace.
        namespace: String,
        /// Pod name.
        pod: String,
        /// Why (phase, container readiness).
        reason: String,
    },
    /// A custom resource lacks something hasteward needs.
    #[error("{kind} {namespace}/{name}: {detail}")]
    Resource {
        /// Kind.
        kind: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// What is missing or malformed.
        detail: String,
    },
    /// Another run holds the cluster's lease.
    #[error("{what} is held by {holder} ({detail}): another hasteward operation on this cluster is running; wait for it, or for the lease to expire if its holder died")]
    Busy {
        /// The lease.
        what: String,
        /// Its holder.
        holder: String,
        /// When it was last renewed.
        detail: String,
    },
    /// Optimistic concurrency kept failing.
    #[error("{what}: the object kept changing under us ({attempts} attempts); retry later")]
    Conflict {
        /// What was being updated.
        what: String,
        /// How many attempts were made.
        attempts: u32,
    },
}

impl Error {
    /// Whether the cause lies outside hasteward's input (cluster down, object missing, pod not
    /// ready): the CLI maps these to the "dependency unavailable" exit code.
    pub fn is_dependency(&self) -> bool {
        matches!(
            self,
            Self::Config { .. }
                | Self::Unreachable { .. }
                | Self::NotFound { .. }
                | Self::PodNotReady { .. }
        )
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
