//! Galera triage analysis (in progress).
