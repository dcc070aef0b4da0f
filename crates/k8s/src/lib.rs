//! Kubernetes access for hasteward: the client, pods and containers looked up by name, secrets,
//! the CloudNativePG and MariaDB custom resources, CNPG fencing, and [`PodRunner`], which runs a
//! [`hasteward_exec::CommandSpec`] in a pod through the exec API so that the engines' streaming
//! code runs unchanged against pods.
//!
//! Every API call is bounded in time, so an unreachable cluster is an error within seconds, not
//! a hang.

mod client;
mod ended;
mod error;
pub mod fencing;
pub mod helper;
pub mod lease;
mod podrunner;
mod pods;
mod resources;
mod secrets;
mod watch;

pub use client::{connect, ClientOptions, Kube};
pub use error::{Error, Result};
pub use podrunner::PodRunner;
pub use pods::{container_ready, container_restarts, find_ready_pod, pod_phase, require_ready};
pub use resources::{
    cnpg_resource, mariadb_resource, CnpgCluster, Condition, MariaDbCluster, SecretKeyRef,
};
pub use secrets::Secret;
