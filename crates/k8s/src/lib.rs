//! Kubernetes access for hasteward.
