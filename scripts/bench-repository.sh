#!/usr/bin/env bash
# Repository operations, measured against plain restic in the same run: copy throughput
# (`hasteward sync` vs `restic copy`, local → local and local → S3 on a real SeaweedFS on
# loopback), the idempotent second sync, and check time (`hasteward check` vs `restic check`,
# metadata only and reading all data). Prints one line per measurement.
# Usage: scripts/bench-repository.sh [MiB]   (default 512, random: no deduplication to flatter it)
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-512}
TOOLS=${HASTEWARD_TOOLS:-/opt/hasteward-tools}
cargo build -q --release -p hasteward
HW=$(realpath "${CARGO_TARGET_DIR:-target}")/release/hasteward
W=$(mktemp -d /tmp/hw-bench-repo.XXXXXX)
cleanup() {
  [ -f "$W/weed.pid" ] && kill "$(cat "$W/weed.pid")" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
echo "repo-bench-pass-1" > "$W/pw"
export RESTIC_PASSWORD_FILE=$W/pw

secs() { # command... -> seconds on stdout, the command's output discarded
  local t0 t1
  t0=$(date +%s.%N)
  "$@" > /dev/null 2>&1
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}
rate() { echo "scale=1; $MIB / $1" | bc; }

# The source: one backup of $MIB MiB through hasteward's own conventions (a snapshot restic copy
# and hasteward sync both select).
restic -r "$W/src" init -q
head -c $((MIB * 1048576)) /dev/urandom \
  | restic -r "$W/src" backup -q --stdin --stdin-filename db/bench/dump.sql --host hasteward \
      --tag engine=standalone,cluster=bench,namespace=db,type=backup,db-type=postgres
SRC=(--repo "$W/src" --password-file "$W/pw")

# SeaweedFS on loopback, free ports.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
S3=$(port)
echo '{"identities":[{"name":"admin","credentials":[{"accessKey":"bench","secretKey":"benchsecret"}],"actions":["Admin","Read","Write","List","Tagging"]}]}' > "$W/s3.json"
mkdir -p "$W/weed"
"$TOOLS/bin/weed" mini -dir="$W/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -metricsIp=127.0.0.1 \
  -admin.ui=false -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false \
  -s3.port="$S3" -s3.port.grpc="$(port)" -master.port="$(port)" -master.port.grpc="$(port)" \
  -volume.port="$(port)" -volume.port.grpc="$(port)" -filer.port="$(port)" -filer.port.grpc="$(port)" \
  -admin.port="$(port)" -admin.port.grpc="$(port)" -debug.port="$(port)" \
  -s3.config="$W/s3.json" > "$W/weed.log" 2>&1 &
echo $! > "$W/weed.pid"
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$S3/" && break; sleep 0.3; done
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=benchsecret AWS_DEFAULT_REGION=us-east-1

echo "# ${MIB} MiB in one snapshot; seconds, MiB/s; restic $(restic version | cut -d' ' -f2)"
for dest in local s3; do
  case $dest in
    local) A="$W/dst-hw"; B="$W/dst-raw" ;;
    s3) A="s3:http://127.0.0.1:$S3/bench/hw"; B="s3:http://127.0.0.1:$S3/bench/raw" ;;
  esac
  t_hw=$(secs "$HW" sync "${SRC[@]}" --to-repo "$A" --to-password-file "$W/pw")
  restic -r "$B" init -q --from-repo "$W/src" --from-password-file "$W/pw" --copy-chunker-params
  t_raw=$(secs restic -r "$B" copy --from-repo "$W/src" --from-password-file "$W/pw")
  t_again=$(secs "$HW" sync "${SRC[@]}" --to-repo "$A" --to-password-file "$W/pw")
  echo "sync $dest: hasteward $t_hw s ($(rate "$t_hw") MiB/s), restic copy $t_raw s ($(rate "$t_raw") MiB/s), ratio $(echo "scale=2; $t_hw / $t_raw" | bc); second sync (nothing to copy) $t_again s"
done
t_hw=$(secs "$HW" check "${SRC[@]}")
t_raw=$(secs restic -r "$W/src" check)
echo "check (metadata): hasteward $t_hw s, restic $t_raw s"
t_hw=$(secs "$HW" check "${SRC[@]}" --read-data-subset 100%)
t_raw=$(secs restic -r "$W/src" check --read-data)
echo "check (all data): hasteward $t_hw s ($(rate "$t_hw") MiB/s), restic $t_raw s"
