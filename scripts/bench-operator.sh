#!/usr/bin/env bash
# Operator footprint: `hasteward serve` with N registered targets (default 1000
# StandaloneDatabases on one policy) against the API simulator, measured idle.
#
#   RSS        VmRSS of the hasteward process after the first planning pass, and at the end
#   CPU        utime+stime of the hasteward process over the idle window, as % of one core
#   plan pass  hasteward_plan_duration_seconds (sum/count, and the max bucket bound): one pass
#              resolves every target, re-plans the schedule book and decides what is due
#
# Nothing fires during the window (the schedule is 03:00 on 1 January). Status is written for
# every target in the first pass, so the window starts after all N have nextBackup.
#
# Environment: BENCH_TARGETS (default 1000), BENCH_IDLE seconds (default 60),
#              CARGO_TARGET_DIR (honoured; binaries from $CARGO_TARGET_DIR/release).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${BENCH_TARGETS:-1000}
IDLE=${BENCH_IDLE:-60}
log() { printf '[bench-operator %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

log "building release binaries"
cargo build --release --locked -q -p hasteward -p hasteward-kubesim
BIN=${CARGO_TARGET_DIR:-target}/release

WORK=$(mktemp -d)
SIM_PID=
OP_PID=
cleanup() {
  [[ -n $OP_PID ]] && kill "$OP_PID" 2>/dev/null || true
  [[ -n $SIM_PID ]] && kill "$SIM_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/fixtures"
python3 - "$WORK/fixtures/objects.yaml" "$N" <<'PY'
import sys
out, n = sys.argv[1], int(sys.argv[2])
docs = []
for ns in range(10):
    docs.append(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: apps-{ns}}}\n")
docs.append("""apiVersion: v1
kind: Secret
metadata: {name: restic, namespace: default}
stringData: {password: bench}
""")
docs.append("""apiVersion: clinic.hasteward.prplanit.com/v1alpha1
kind: BackupRepository
metadata: {name: local}
spec:
  restic:
    repository: /nonexistent/bench-repo
    passwordSecretRef: {name: restic, namespace: default, key: password}
""")
docs.append("""apiVersion: clinic.hasteward.prplanit.com/v1alpha1
kind: BackupPolicy
metadata: {name: yearly}
spec:
  backupSchedule: "0 3 1 1 *"
  jitterSeconds: 3600
  repositories: [local]
  retention: {keepDaily: 7, keepWeekly: 4}
""")
for i in range(n):
    docs.append(f"""apiVersion: clinic.hasteward.prplanit.com/v1alpha1
kind: StandaloneDatabase
metadata: {{name: db-{i}, namespace: apps-{i % 10}}}
spec:
  dbType: postgres
  target: {{statefulSet: {{name: db-{i}}}}}
  policy: yearly
""")
open(out, "w").write("---\n".join(docs))
PY

log "starting the API simulator with $N StandaloneDatabases"
"$BIN/hasteward-kubesim" --fixtures "$WORK/fixtures" --kubeconfig-out "$WORK/kubeconfig" \
  --namespace default >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIM_PID=$!
for _ in $(seq 1 100); do grep -q listening "$WORK/sim.out" 2>/dev/null && break; sleep 0.1; done
grep -q listening "$WORK/sim.out" || { cat "$WORK/sim.err" >&2; exit 1; }

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN/hasteward" serve --kubeconfig "$WORK/kubeconfig" --listen "127.0.0.1:$PORT" \
  --lease-namespace default --no-cnpg --no-mariadb 2>"$WORK/serve.err" &
OP_PID=$!
metrics() { curl -sf "http://127.0.0.1:$PORT/metrics" || true; }
metric() { metrics | awk -v k="$1" '$1 == k { print $2 }'; }

START=$(date +%s.%N)
for _ in $(seq 1 600); do
  [[ "$(metric 'hasteward_managed_databases{engine="standalone"}')" == "$N" ]] && break
  sleep 0.1
done
[[ "$(metric 'hasteward_managed_databases{engine="standalone"}')" == "$N" ]] || {
  cat "$WORK/serve.err" >&2; echo "the operator never planned $N targets" >&2; exit 1; }
# The first pass also wrote a status per target; wait until the last one is in.
python3 - "$WORK/kubeconfig" "$N" <<'PY'
import json, sys, time, urllib.request, re
server = re.search(r"server:\s*\"?([^\"\s]+)", open(sys.argv[1]).read()).group(1)
n = int(sys.argv[2])
for _ in range(600):
    items = json.load(urllib.request.urlopen(server + "/apis/clinic.hasteward.prplanit.com/v1alpha1/standalonedatabases"))["items"]
    if sum(1 for i in items if i.get("status", {}).get("nextBackup")) == n:
        break
    time.sleep(0.2)
else:
    sys.exit("not every target got its status")
PY
READY=$(date +%s.%N)
log "all $N targets planned and their status written in $(python3 -c "print(round($READY-$START,2))") s"

rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$OP_PID/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$OP_PID/stat"; }
HZ=$(getconf CLK_TCK)
RSS0=$(rss_kib)
T0=$(cpu_ticks)
SUM0=$(metric hasteward_plan_duration_seconds_sum)
COUNT0=$(metric hasteward_plan_duration_seconds_count)
log "idle for $IDLE s"
sleep "$IDLE"
T1=$(cpu_ticks)
RSS1=$(rss_kib)
SUM=$(metric hasteward_plan_duration_seconds_sum)
COUNT=$(metric hasteward_plan_duration_seconds_count)
python3 - "$N" "$IDLE" "$RSS0" "$RSS1" "$T0" "$T1" "$HZ" "$SUM" "$COUNT" "$(python3 -c "print($READY-$START)")" "$SUM0" "$COUNT0" <<'PY'
import sys
n, idle, rss0, rss1, t0, t1, hz, s, c, ready, s0, c0 = sys.argv[1:]
n, idle = int(n), float(idle)
cpu = (int(t1) - int(t0)) / int(hz)
print(f"targets                 {n}")
print(f"first pass + statuses   {float(ready):.2f} s")
print(f"RSS after first pass    {int(rss0)/1024:.1f} MiB")
print(f"RSS after {idle:.0f} s idle      {int(rss1)/1024:.1f} MiB")
print(f"CPU while idle          {cpu:.2f} s = {100*cpu/idle:.2f} % of one core")
print(f"planning passes         {int(float(c))} in all, mean {1000*float(s)/float(c):.2f} ms (the first pass plans every target from scratch)")
idle_passes = float(c) - float(c0)
if idle_passes > 0:
    print(f"passes while idle       {int(idle_passes)}, mean {1000*(float(s)-float(s0))/idle_passes:.2f} ms per pass over {n} targets")
PY
