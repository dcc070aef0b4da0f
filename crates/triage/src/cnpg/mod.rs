//! CloudNativePG triage analysis (in progress).
