# Task runner (`pip install rust-just` provides `just`). The README's two commands do not need it.

# Run the embedded demo (throwaway PostgreSQL + restic repository).
demo:
    ./scripts/demo.sh

# The whole test suite, as CI runs it.
test:
    ./scripts/test.sh

# Benchmarks: hasteward vs the raw shell pipeline, in the same run (see docs/performance.md).
bench:
    ./scripts/bench.sh
    ./scripts/bench-operator.sh
    ./scripts/bench-repository.sh
    ./scripts/bench-engines.sh

# Copy throughput and check time against plain restic (local and S3 on SeaweedFS).
bench-repository:
    ./scripts/bench-repository.sh

# Vault (OpenBao raft snapshots) and VictoriaMetrics (vmbackup/vmrestore) against the raw commands.
bench-engines:
    ./scripts/bench-engines.sh

# The operator's idle footprint with 1,000 registered targets (see docs/performance.md).
bench-operator:
    ./scripts/bench-operator.sh

# Formatting and lints.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Cluster tests (need a real Kubernetes cluster; not part of CI).
e2e:
    cargo test --workspace -- --ignored

# Regenerate the CRD YAML from the Rust types (a test fails when it is stale).
crds:
    cargo run -q -p hasteward -- crd > deploy/crds/hasteward.yaml
    cp deploy/crds/hasteward.yaml deploy/helm/hasteward/crds/hasteward.yaml
