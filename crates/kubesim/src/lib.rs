//! A Kubernetes API simulator for tests.
