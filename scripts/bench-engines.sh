#!/usr/bin/env bash
# The Vault and VictoriaMetrics engines, measured against the raw commands they replace, in the
# same run, against the same server:
#
# * -e vault: a real OpenBao (raft storage) seeded with KV v2 secrets. `hasteward backup -e vault`
#   vs `bao operator raft snapshot save /dev/stdout | restic backup --stdin`, and
#   `hasteward restore -e vault --force` vs `restic dump | bao operator raft snapshot restore
#   /dev/stdin`, into one restic repository. After every restore a changed canary secret reads
#   its backed-up value again and a sample secret reads back.
# * -e vmbackup: a real VictoriaMetrics with series × samples in the past. `hasteward backup -e
#   vmbackup` (writes `latest`, then `daily/<today>` with -origin=latest) vs the same two raw
#   vmbackup runs; the incremental second run of each after a few more samples; and, with the
#   server stopped and its data wiped, `hasteward restore -e vmbackup --force` vs `vmrestore`.
#   After every restore the server is started again and the series and samples are counted.
#
# Rounds alternate hasteward and raw; medians are printed, one line per measurement, with every
# round's figures in brackets. Wall time only: the ratios are for reading, nothing asserts them.
# Usage: scripts/bench-engines.sh
# Knobs: BENCH_ROUNDS (3), BENCH_VAULT_SECRETS (5000), BENCH_VAULT_VALUE_BYTES (512),
#        BENCH_VM_SERIES (1000), BENCH_VM_POINTS (1440, one a minute), BENCH_VM_INCR_POINTS (5),
#        HASTEWARD_TOOLS (bao: $HASTEWARD_TOOLS/bin/bao), VMBIN (/usr/bin), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${BENCH_ROUNDS:-3}
SECRETS=${BENCH_VAULT_SECRETS:-5000}
VALUE_BYTES=${BENCH_VAULT_VALUE_BYTES:-512}
SERIES=${BENCH_VM_SERIES:-1000}
POINTS=${BENCH_VM_POINTS:-1440}
INCR_POINTS=${BENCH_VM_INCR_POINTS:-5}
TOOLS=${HASTEWARD_TOOLS:-/opt/hasteward-tools}
VMBIN=${VMBIN:-/usr/bin}
for p in "$TOOLS/bin/bao" "$VMBIN/victoria-metrics" "$VMBIN/vmbackup" "$VMBIN/vmrestore"; do
  [ -x "$p" ] || { echo "bench-engines: $p is missing (scripts/install-deps.sh installs it)" >&2; exit 1; }
done
for p in restic curl python3 bc; do
  command -v "$p" > /dev/null || { echo "bench-engines: $p is missing" >&2; exit 1; }
done
cargo build -q --release -p hasteward
HW=$(realpath "${CARGO_TARGET_DIR:-target}")/release/hasteward
case $HW in /*) ;; *) HW=$PWD/$HW ;; esac
T_START=$EPOCHREALTIME

umask 077
W=$(mktemp -d /tmp/hw-bench-engines.XXXXXX)
stop_pid() { # PIDFILE: SIGTERM, up to 30 s to exit, then SIGKILL; only the pid we started
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  rm -f "$f"
  kill "$pid" 2> /dev/null || return 0
  for _ in $(seq 1 150); do kill -0 "$pid" 2> /dev/null || return 0; sleep 0.2; done
  kill -KILL "$pid" 2> /dev/null || true
}
cleanup() {
  stop_pid "$W/bao.pid"
  stop_pid "$W/vm.pid"
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
secs() { # command... -> wall seconds on stdout; on failure its output goes to stderr and it fails
  local t0 t1
  t0=$EPOCHREALTIME
  if ! "$@" > "$W/last.log" 2>&1; then
    echo "bench-engines: FAILED: $*" >&2
    tail -n 40 "$W/last.log" >&2
    return 1
  fi
  t1=$EPOCHREALTIME
  printf '%.3f\n' "$(echo "$t1 - $t0" | bc)"
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
ratio() { echo "scale=2; $1 / $2" | bc | sed 's/^\./0./'; }
mib() { echo "scale=1; $1 / 1048576" | bc | sed 's/^\./0./'; }
line() { # LABEL HW_TIMES RAW_TIMES RAW_NAME [NOTE]
  local h r
  h=$(median $2)
  r=$(median $3)
  echo "$1: hasteward $h s [$2], $4 $r s [$3], ratio $(ratio "$h" "$r")${5:+; $5}"
}

echo "pw-bench-engines-1" > "$W/pw"
export RESTIC_PASSWORD_FILE=$W/pw
echo "# $(nproc) cores; median of $ROUNDS rounds, seconds [each round]; restic $(restic version | cut -d' ' -f2); hasteward $(git rev-parse --short HEAD 2> /dev/null || echo '?')$(git diff --quiet HEAD -- cmd crates Cargo.toml Cargo.lock 2> /dev/null || echo '+changes')"

# ---------------------------------------------------------------- OpenBao (-e vault) ---------
B=$W/bao
mkdir -p "$B/data" "$W/bin"
ln -s "$TOOLS/bin/bao" "$W/bin/bao" # hasteward finds `bao` on PATH, as the raw pipe does
export PATH="$W/bin:$PATH"
BAO_PORT=$(port)
BAO_CLUSTER_PORT=$(port)
export BAO_ADDR=http://127.0.0.1:$BAO_PORT
cat > "$B/bao.hcl" << EOF
storage "raft" {
  path    = "$B/data"
  node_id = "n1"
  performance_multiplier = 1
}
listener "tcp" {
  address         = "127.0.0.1:$BAO_PORT"
  cluster_address = "127.0.0.1:$BAO_CLUSTER_PORT"
  tls_disable     = true
}
api_addr      = "http://127.0.0.1:$BAO_PORT"
cluster_addr  = "http://127.0.0.1:$BAO_CLUSTER_PORT"
disable_mlock = true
ui            = false
EOF
bao server -config="$B/bao.hcl" > "$B/server.log" 2>&1 &
echo $! > "$W/bao.pid"
bao_() { BAO_TOKEN=$(cat "$B/token") bao "$@"; } # the token in the environment, never in argv
bao_up() { # waits (up to 60 s) for an unsealed raft leader that serves KV reads
  for _ in $(seq 1 300); do
    bao_ kv get -field=state secret/canary > /dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "bench-engines: OpenBao has no unsealed leader" >&2
  tail -n 30 "$B/server.log" >&2
  return 1
}
for _ in $(seq 1 150); do # `bao status`: 0 unsealed, 2 sealed, 1 not answering
  rc=0
  bao status > /dev/null 2>&1 || rc=$?
  [ $rc -ne 1 ] && break
  sleep 0.2
done
[ $rc -ne 1 ] || { echo "bench-engines: bao server did not start" >&2; tail -n 30 "$B/server.log" >&2; exit 1; }
bao operator init -key-shares=1 -key-threshold=1 -format=json > "$B/init.json"
python3 - "$B" << 'PY'
import json, sys
d = sys.argv[1]
init = json.load(open(f"{d}/init.json"))
open(f"{d}/token", "w").write(init["root_token"] + "\n")
open(f"{d}/unseal-key", "w").write(init["unseal_keys_b64"][0])
open(f"{d}/header", "w").write("X-Vault-Token: " + init["root_token"] + "\n")
PY
rm -f "$B/init.json"
bao write sys/unseal key=- < "$B/unseal-key" > /dev/null # the key on stdin, not in argv
for _ in $(seq 1 300); do bao_ operator raft list-peers > /dev/null 2>&1 && break; sleep 0.2; done
bao_ secrets enable -path=secret kv-v2 > /dev/null
bao_ kv put secret/canary state=backed-up > /dev/null

# Seeding: SECRETS KV v2 writes over the HTTP API, 8 curl processes each reusing one connection;
# the token goes in a header file (-H @file), the values are random (the barrier encrypts them
# anyway, so the snapshot does not compress them).
python3 - "$B/seed" "$SECRETS" "$VALUE_BYTES" "$BAO_ADDR" "$B/header" << 'PY'
import base64, json, os, sys
d, n, size, addr, header = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
os.makedirs(d)
files = [open(f"{d}/batch{i}.cfg", "w") for i in range(max(1, min(8, n)))]
for k in range(n):
    value = base64.b64encode(os.urandom(size))[:size].decode()
    body = json.dumps({"data": {"user": f"user{k}", "password": value}})
    body = body.replace("\\", "\\\\").replace('"', '\\"')
    f = files[k % len(files)]
    if f.tell():
        f.write("next\n")
    f.write(
        f'url = "{addr}/v1/secret/data/bench/s{k}"\nheader = "@{header}"\ndata = "{body}"\n'
        'output = "/dev/null"\nwrite-out = "%{http_code}\\n"\n')
PY
t0=$EPOCHREALTIME
ls "$B"/seed/batch*.cfg | xargs -P 8 -n 1 curl -s -K > "$B/seed/codes"
t_seed=$(echo "$EPOCHREALTIME - $t0" | bc)
ok=$(grep -c '^20[04]$' "$B/seed/codes" || true)
[ "$ok" -eq "$SECRETS" ] || { echo "bench-engines: only $ok of $SECRETS secrets written" >&2; sort "$B/seed/codes" | uniq -c >&2; exit 1; }
rm -rf "$B/seed"
bao_ operator raft snapshot save "$B/probe.snap"
SNAP_BYTES=$(stat -c %s "$B/probe.snap")
rm -f "$B/probe.snap"
echo "# vault: OpenBao $(bao version | awk '{print $2}'), $SECRETS KV v2 secrets (${VALUE_BYTES}-byte values) written in $(printf '%.1f' "$t_seed") s; raft snapshot $SNAP_BYTES bytes ($(mib "$SNAP_BYTES") MiB)"

restic -r "$W/repo" init -q
VAULT=(-e vault -c bench --vault-addr "$BAO_ADDR" --vault-token-file "$B/token" --repo "$W/repo" --password-file "$W/pw")
raw_vault_backup() {
  bao_ operator raft snapshot save /dev/stdout | restic -r "$W/repo" backup -q --stdin --stdin-filename raw.snap
}
raw_vault_restore() {
  restic -r "$W/repo" dump --path /raw.snap latest /raw.snap | bao_ operator raft snapshot restore /dev/stdin
}
# One unmeasured backup of each first: every measured one then deduplicates against the
# repository, as a nightly backup of a slowly changing server does.
secs "$HW" backup "${VAULT[@]}" > /dev/null
secs raw_vault_backup > /dev/null
hw=() raw=()
for _ in $(seq 1 "$ROUNDS"); do
  sync
  hw+=("$(secs "$HW" backup "${VAULT[@]}")")
  sync
  raw+=("$(secs raw_vault_backup)")
done
line "vault backup" "${hw[*]}" "${raw[*]}" "raw (bao operator raft snapshot save /dev/stdout | restic backup --stdin)"
open=() status=()
for _ in 1 2 3; do
  open+=("$(secs restic -r "$W/repo" cat config)")
  status+=("$(secs bao status)")
done
echo "# fixed costs, median of 3: one restic repository open (restic cat config) $(median "${open[@]}") s; bao status $(median "${status[@]}") s"

sample=$((SECRETS / 2))
check_vault() { # the canary is back to its backed-up value, and a sample secret reads back
  bao_up
  local state user
  state=$(bao_ kv get -field=state secret/canary)
  user=$(bao_ kv get -field=user "secret/bench/s$sample")
  [ "$state" = backed-up ] && [ "$user" = "user$sample" ] || {
    echo "bench-engines: after the restore: canary '$state', secret/bench/s$sample user '$user'" >&2
    exit 1
  }
}
hw=() raw=()
for _ in $(seq 1 "$ROUNDS"); do
  bao_ kv put secret/canary state=changed > /dev/null
  hw+=("$(secs "$HW" restore "${VAULT[@]}" --force)")
  check_vault
  bao_ kv put secret/canary state=changed > /dev/null
  raw+=("$(secs raw_vault_restore)")
  check_vault
done
line "vault restore" "${hw[*]}" "${raw[*]}" "raw (restic dump | bao operator raft snapshot restore /dev/stdin)" \
  "after each: canary back to its backed-up value, secret/bench/s$sample reads back"
stop_pid "$W/bao.pid"

# ---------------------------------------------------------- VictoriaMetrics (-e vmbackup) ----
V=$W/vm
DATA=$V/data
mkdir -p "$V/bk"
VM_PORT=$(port)
VM_URL=http://127.0.0.1:$VM_PORT
start_vm() {
  "$VMBIN/victoria-metrics" -storageDataPath="$DATA" -httpListenAddr="127.0.0.1:$VM_PORT" \
    -retentionPeriod=100y >> "$V/vm.log" 2>&1 &
  echo $! > "$W/vm.pid"
  for _ in $(seq 1 300); do curl -sf -o /dev/null "$VM_URL/health" && return 0; sleep 0.2; done
  echo "bench-engines: victoria-metrics did not start" >&2
  tail -n 30 "$V/vm.log" >&2
  return 1
}
stop_vm() { stop_pid "$W/vm.pid"; }
vm_value() { # QUERY -> the single value of an instant query
  curl -sf --data-urlencode "query=$1" "$VM_URL/api/v1/query" \
    | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)'
}
# (Not /api/v1/series/count: it counts index entries, more than the series when they span days.)
vm_series() { vm_value 'count(count_over_time({__name__=~"bench_.*"}[10d]))'; }
vm_samples() { vm_value 'sum(count_over_time({__name__=~"bench_.*"}[10d]))'; }
# Samples one a minute, the last at END minutes (epoch); INCR_POINTS more per incremental round,
# after them and still in the past, plus one new series per round.
END=$(( ($(date +%s) / 60) - 60 ))
gen() { # FIRST_MINUTE COUNT ROUND -> Prometheus text for every series (and round's new series)
  python3 - "$SERIES" "$1" "$2" "$3" << 'PY'
import random, sys
series, first, count, rnd = (int(a) for a in sys.argv[1:])
random.seed(rnd)
out = sys.stdout
for s in range(series):
    v = random.uniform(0, 1000)
    lines = []
    for m in range(first, first + count):
        v += random.gauss(0, 5)
        lines.append(f'bench_metric{{job="bench",instance="i{s % 50:02d}",series="s{s:04d}"}} {v:.2f} {m * 60000}\n')
    out.write("".join(lines))
if rnd > 0:
    for m in range(first, first + count):
        out.write(f'bench_incr{{round="{rnd}"}} {m} {m * 60000}\n')
PY
}
import_vm() { # FILE
  curl -sf -H 'Content-Type: text/plain' --data-binary @"$1" "$VM_URL/api/v1/import/prometheus"
  curl -sf -o /dev/null "$VM_URL/internal/force_flush"
}
start_vm
gen $((END - POINTS + 1)) "$POINTS" 0 > "$V/samples.prom"
t0=$EPOCHREALTIME
import_vm "$V/samples.prom"
t_import=$(echo "$EPOCHREALTIME - $t0" | bc)
rm -f "$V/samples.prom"
want_series=$SERIES
want_samples=$((SERIES * POINTS))
check_vm() {
  local n s
  n=$(vm_series)
  s=$(vm_samples)
  [ "$n" = "$want_series" ] && [ "$s" = "$want_samples" ] || {
    echo "bench-engines: VictoriaMetrics holds $n series / $s samples, expected $want_series / $want_samples" >&2
    exit 1
  }
}
check_vm
# force_flush makes the samples searchable; a snapshot writes them to the data dir's parts.
curl -sf -o /dev/null "$VM_URL/snapshot/create"
curl -sf -o /dev/null "$VM_URL/snapshot/delete_all"
echo "# vmbackup: VictoriaMetrics $(dpkg-query -W -f '${Version}' victoria-metrics 2> /dev/null || echo '?'), $SERIES series × $POINTS samples ($want_samples) imported in $(printf '%.1f' "$t_import") s; data dir $(mib "$(du -sb "$DATA" | cut -f1)") MiB"

DAY=$(date -u +%F)
hw_vm_backup() { # NAME
  "$HW" backup -e vmbackup -c bench --vm-url "$VM_URL" --storage-data-path "$DATA" --dst "fs://$V/bk/hw-$1"
}
raw_vm_backup() { # NAME: what hasteward runs, by hand: latest, then today's daily from it
  local dst=fs://$V/bk/raw-$1
  "$VMBIN/vmbackup" -storageDataPath="$DATA" -snapshot.createURL="$VM_URL/snapshot/create" \
    -dst="$dst/latest" -httpListenAddr=127.0.0.1:0 || return
  "$VMBIN/vmbackup" -storageDataPath="$DATA" -snapshot.createURL="$VM_URL/snapshot/create" \
    -dst="$dst/daily/$DAY" -origin="$dst/latest" -httpListenAddr=127.0.0.1:0
}
hw=() raw=()
for r in $(seq 1 "$ROUNDS"); do # each round into a fresh destination: a full backup
  sync
  hw+=("$(secs hw_vm_backup "$r")")
  sync
  raw+=("$(secs raw_vm_backup "$r")")
done
[ -f "$V/bk/hw-$ROUNDS/daily/$DAY/backup_complete.ignore" ] || { echo "bench-engines: no daily/$DAY generation" >&2; exit 1; }
line "vmbackup full (latest + daily/$DAY)" "${hw[*]}" "${raw[*]}" "raw (vmbackup → latest; vmbackup -origin=latest → daily)" \
  "backup $(mib "$(du -sb "$V/bk/hw-$ROUNDS/latest" | cut -f1)") MiB per generation"

hw=() raw=()
for r in $(seq 1 "$ROUNDS"); do # more samples, then the second run into the last destinations
  gen $((END + (r - 1) * INCR_POINTS + 1)) "$INCR_POINTS" "$r" > "$V/incr.prom"
  import_vm "$V/incr.prom"
  want_series=$((want_series + 1))
  want_samples=$((want_samples + (SERIES + 1) * INCR_POINTS))
  sync
  hw+=("$(secs hw_vm_backup "$ROUNDS")")
  sync
  raw+=("$(secs raw_vm_backup "$ROUNDS")")
done
check_vm
line "vmbackup incremental (+$INCR_POINTS samples per series, +1 series)" "${hw[*]}" "${raw[*]}" "raw (the same two vmbackup runs)"

hw_vm_restore() {
  "$HW" restore -e vmbackup -c bench --vm-url "$VM_URL" --storage-data-path "$DATA" --dst "fs://$V/bk/hw-$ROUNDS" --force
}
raw_vm_restore() {
  "$VMBIN/vmrestore" -src="fs://$V/bk/raw-$ROUNDS/latest" -storageDataPath="$DATA" -httpListenAddr=127.0.0.1:0
}
hw=() raw=()
for _ in $(seq 1 "$ROUNDS"); do # server stopped, data wiped, restored, started, counted
  for who in hw raw; do
    stop_vm
    rm -rf "$DATA"
    mkdir "$DATA"
    sync
    t=$(secs "${who}_vm_restore")
    if [ $who = hw ]; then hw+=("$t"); else raw+=("$t"); fi
    start_vm
    check_vm
  done
done
line "vmrestore (latest, into a wiped data dir)" "${hw[*]}" "${raw[*]}" "raw (vmrestore)" \
  "after each: $want_series series, $want_samples samples"
stop_vm
echo "# bench-engines: $(printf '%.0f' "$(echo "$EPOCHREALTIME - $T_START" | bc)") s after the build"
