#!/usr/bin/env bash
# Benchmark: hasteward vs the raw shell pipeline, in the same run, on the same machine and the
# same restic repository (see docs/performance.md).
#
#   backup:  hasteward backup            vs  pg_dumpall | restic backup --stdin
#   restore: hasteward restore --force   vs  restic dump | psql
#   exec relay: hasteward -e cnpg through the API simulator's pod exec (the dump's bytes travel
#            over the exec websocket, as through a real API server) vs hasteward on the local pipe
#
# Starts a throwaway PostgreSQL 15 on a free 127.0.0.1 port, fills it with pgbench, and removes
# everything on exit. hasteward's own CPU time and peak RSS are read from /proc/<pid> of the
# hasteward process only (its children, pg_dumpall/restic/psql, are not counted).
#
# Environment:
#   BENCH_SCALE         pgbench scale of the main dataset (default 20, about 300 MB)
#   BENCH_SMALL_SCALE   pgbench scale of the "flat as the dump grows" check (default BENCH_SCALE/4)
#   BENCH_ROUNDS        measured rounds per phase (default 5)
#   BENCH_SMALL_ROUNDS  hasteward backups at the small scale (default 3)
#   BENCH_POLL          /proc polling interval in seconds (default 0.01)
#   BENCH_EXEC_ROUNDS   rounds of the exec-relay comparison (default BENCH_ROUNDS; 0 skips it)
#   CARGO_TARGET_DIR    honoured for the build; the binary is $CARGO_TARGET_DIR/release/hasteward
set -euo pipefail
cd "$(dirname "$0")/.."

SCALE=${BENCH_SCALE:-20}
SMALL_SCALE=${BENCH_SMALL_SCALE:-$(( SCALE / 4 > 0 ? SCALE / 4 : 1 ))}
ROUNDS=${BENCH_ROUNDS:-5}
SMALL_ROUNDS=${BENCH_SMALL_ROUNDS:-3}
POLL=${BENCH_POLL:-0.01}
EXEC_ROUNDS=${BENCH_EXEC_ROUNDS:-$ROUNDS}
PG_BIN=/usr/lib/postgresql/15/bin

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in initdb pg_ctl psql pg_dumpall pgbench; do
    [[ -x $PG_BIN/$tool ]] || die "PostgreSQL 15 not found at $PG_BIN (no $tool): run scripts/install-deps.sh"
done
command -v restic >/dev/null || die "restic not on PATH: run scripts/install-deps.sh"
command -v cargo >/dev/null || die "cargo not on PATH"
# The real PostgreSQL 15 client binaries for both contenders (not Debian's pg_wrapper).
export PATH=$PG_BIN:$PATH

# --- build -------------------------------------------------------------------------------------
log "building the release binaries"
cargo build --release --locked -p hasteward -p hasteward-kubesim >&2
HASTEWARD=$(realpath "${CARGO_TARGET_DIR:-target}")/release/hasteward
KUBESIM=$(realpath "${CARGO_TARGET_DIR:-target}")/release/hasteward-kubesim
[[ -x $HASTEWARD ]] || die "no binary at $HASTEWARD"
[[ -x $KUBESIM ]] || die "no binary at $KUBESIM"

# --- temp dir, cleanup ---------------------------------------------------------------------------
TMP=$(mktemp -d /tmp/hasteward-bench.XXXXXX)
chmod 0755 "$TMP" # traversable by the postgres OS user
PGDATA_DIR=$TMP/pg/data
PGLOG=$TMP/pg/postgres.log
RUN_AS=()
if [[ $(id -u) -eq 0 ]]; then
    RUN_AS=(runuser -u postgres --)
fi
PG_STARTED=0
MEASURED_PID=
KUBESIM_PID=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $MEASURED_PID ]]; then kill "$MEASURED_PID" 2>/dev/null || true; fi
    if [[ -n $KUBESIM_PID ]]; then kill "$KUBESIM_PID" 2>/dev/null || true; wait "$KUBESIM_PID" 2>/dev/null || true; fi
    if [[ $PG_STARTED -eq 1 ]]; then
        "${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A file descriptor nothing is ever written to: `read -t` on it is a sleep without a fork.
exec {SLEEP_FD}<> <(:)
nap() { read -r -t "$1" -u "$SLEEP_FD" _ || true; }

secret() { tr -dc 'A-Za-z0-9' </dev/urandom | head -c 24 || true; }

# --- PostgreSQL 15 ---------------------------------------------------------------------------
PGPW=$(secret)
mkdir -p "$TMP/pg"
printf '%s\n' "$PGPW" >"$TMP/pg/pwfile"
if [[ ${#RUN_AS[@]} -gt 0 ]]; then chown -R postgres: "$TMP/pg"; fi
chmod 0700 "$TMP/pg"
log "initdb (scram-sha-256 over TCP)"
(cd "$TMP/pg" && "${RUN_AS[@]}" "$PG_BIN/initdb" -D "$PGDATA_DIR" -U postgres \
    --auth-local=trust --auth-host=scram-sha-256 --pwfile="$TMP/pg/pwfile" \
    --encoding=UTF8 --locale=C --no-sync >/dev/null)
cat >>"$PGDATA_DIR/postgresql.conf" <<EOF

# hasteward bench
listen_addresses = '127.0.0.1'
unix_socket_directories = '$TMP/pg'
fsync = off
synchronous_commit = off
full_page_writes = off
max_wal_size = 4GB
shared_buffers = 128MB
max_connections = 20
EOF

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PGPORT_=
for attempt in 1 2 3 4 5; do
    port=$(( 20000 + RANDOM % 40000 ))
    port_in_use "$port" && continue
    echo "port = $port" >>"$PGDATA_DIR/postgresql.conf"
    if (cd "$TMP/pg" && "${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$PGLOG" -w -t 60 start >/dev/null </dev/null); then
        PGPORT_=$port
        PG_STARTED=1
        break
    fi
    tail -n 20 "$PGLOG" >&2 || true
    grep -q "Address already in use" "$PGLOG" || die "PostgreSQL failed to start"
done
[[ -n $PGPORT_ ]] || die "no free port for PostgreSQL"
log "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PGPORT_"

# Credentials: hasteward gets --db-password-file, the raw pipe a PGPASSFILE (both 0600).
umask 077
mkdir -p "$TMP/secrets"
printf '%s\n' "$PGPW" >"$TMP/secrets/db.pw"
printf '127.0.0.1:%s:*:postgres:%s\n' "$PGPORT_" "$PGPW" >"$TMP/secrets/pgpass"
printf '%s\n' "$(secret)" >"$TMP/secrets/repo.pw"
umask 022
export PGPASSFILE=$TMP/secrets/pgpass
unset PGPASSWORD PGHOST PGPORT PGUSER PGDATABASE
REPO=$TMP/repo
export RESTIC_REPOSITORY=$REPO RESTIC_PASSWORD_FILE=$TMP/secrets/repo.pw
export RESTIC_CACHE_DIR=$TMP/restic-cache
unset RESTIC_PASSWORD RESTIC_PASSWORD_COMMAND RESTIC_REPOSITORY_FILE
mkdir -p "$TMP/logs"
LOGS=$TMP/logs

PSQL=(psql -h 127.0.0.1 -p "$PGPORT_" -U postgres -X -q -w)
sql() { "${PSQL[@]}" -A -t -d "${2:-postgres}" -c "$1"; }
target_args() {
    printf '%s\n' -e standalone --db-type postgres -c "$1" --host 127.0.0.1 --port "$PGPORT_" \
        --db-user postgres --db-password-file "$TMP/secrets/db.pw" \
        --repo "$REPO" --password-file "$TMP/secrets/repo.pw" -o json
}
mapfile -t HW_MAIN < <(target_args bench)
mapfile -t HW_SMALL < <(target_args bench-small)

# --- measurement -------------------------------------------------------------------------------
# measure CMD... | measure hw ARGS...: runs the command in the background (`hw`: the hasteward
# binary itself, exec'd directly so that $! is its pid, output to $LOGS/hw.{out,err}) and polls
# /proc/<pid> every $POLL s until it exits. Sets M_WALL (s), M_CPU (utime+stime of that process
# only, s), M_HWM (VmHWM of that process, KiB), M_BUSY (CPU seconds the whole machine was busy
# meanwhile: every process, PostgreSQL included) and M_RC. For `hw` it also records when each
# direct child (restic <subcommand>, psql, pg_dumpall) was first and last seen, for `phases`.
CLK_TCK=$(getconf CLK_TCK)
declare -A C_NAME=() C_FIRST=() C_LAST=()
cpu_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
usec() { local t=${1/./}; echo $(( 10#$t )); } # EPOCHREALTIME -> integer microseconds
measure() {
    local start end stat rest key val ticks=0 hwm=0 t pid want= now cf k b
    local -a f kids argv
    C_NAME=() C_FIRST=() C_LAST=()
    local busy0
    busy0=$(cpu_busy)
    start=$EPOCHREALTIME
    if [[ $1 == hw ]]; then
        want=hasteward # skip samples of the forked shell before it execs the binary
        "$HASTEWARD" "${@:2}" >"$LOGS/hw.out" 2>"$LOGS/hw.err" &
    else
        "$@" &
    fi
    MEASURED_PID=$!
    pid=$MEASURED_PID
    while [[ -e /proc/$pid ]]; do
        if read -r stat 2>/dev/null </proc/"$pid"/stat; then
            rest=${stat#*(}
            if [[ -n $want && ${rest%%)*} != "$want" ]]; then nap "$POLL"; continue; fi
            rest=${stat##*) }
            read -r -a f <<<"$rest"
            # f[0] is field 3 (state); utime is field 14, stime field 15 (whole process).
            [[ ${f[11]-} =~ ^[0-9]+$ && ${f[12]-} =~ ^[0-9]+$ ]] || { nap "$POLL"; continue; }
            t=$(( f[11] + f[12] ))
            (( t > ticks )) && ticks=$t
            [[ ${f[0]} == Z ]] && break
            if [[ -n $want ]]; then
                now=$(usec "$EPOCHREALTIME")
                for cf in /proc/"$pid"/task/*/children; do
                    kids=()
                    { read -r -a kids <"$cf"; } 2>/dev/null || true
                    for k in "${kids[@]}"; do
                        if [[ -z ${C_NAME[$k]-} ]]; then
                            argv=()
                            { mapfile -d '' -t argv </proc/"$k"/cmdline; } 2>/dev/null || continue
                            b=${argv[0]-}
                            b=${b##*/}
                            # not yet exec'd (still a copy of hasteward) or already gone
                            [[ -z $b || $b == hasteward ]] && continue
                            C_NAME[$k]="$b ${argv[1]-}" C_FIRST[$k]=$now
                        fi
                        C_LAST[$k]=$now
                    done
                done
            fi
        fi
        { while read -r key val _; do
            if [[ $key == VmHWM: ]]; then [[ $val =~ ^[0-9]+$ ]] && (( val > hwm )) && hwm=$val; break; fi
        done </proc/"$pid"/status; } 2>/dev/null || true
        nap "$POLL"
    done
    M_RC=0
    wait "$pid" || M_RC=$?
    end=$EPOCHREALTIME
    M_BUSY=$(awk -v t=$(( $(cpu_busy) - busy0 )) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')
    MEASURED_PID=
    M_START=$(usec "$start") M_END=$(usec "$end")
    M_WALL=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')
    M_CPU=$(awk -v t="$ticks" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')
    M_HWM=$hwm
}

# phases SUBCOMMAND: splits the last `measure hw` run around its streaming phase: from the start
# of `restic SUBCOMMAND` (backup, dump) to the end of the last child started while it ran
# (pg_dumpall for a backup, the restoring psql for a restore). Sets P_PRE, P_STREAM and P_POST (s).
phases() {
    local k s=0 r=0 e=0
    for k in "${!C_NAME[@]}"; do
        if [[ ${C_NAME[$k]} == "restic $1" ]]; then s=${C_FIRST[$k]} r=${C_LAST[$k]}; fi
    done
    (( s > 0 )) || die "phases: no 'restic $1' child seen"
    for k in "${!C_NAME[@]}"; do
        if (( C_FIRST[$k] >= s && C_FIRST[$k] <= r && C_LAST[$k] > e )); then e=${C_LAST[$k]}; fi
    done
    P_PRE=$(awk -v v=$(( s - M_START )) 'BEGIN { printf "%.3f", v / 1e6 }')
    P_STREAM=$(awk -v v=$(( e - s )) 'BEGIN { printf "%.3f", v / 1e6 }')
    P_POST=$(awk -v v=$(( M_END - e )) 'BEGIN { printf "%.3f", v / 1e6 }')
}
children() { local k; for k in "${!C_NAME[@]}"; do printf '%s %s %s\n' "${C_FIRST[$k]}" "${C_LAST[$k]}" "${C_NAME[$k]}"; done | sort -n | awk -v t0="$M_START" '{ printf "%s[%.2f-%.2f s] ", $3" "$4, ($1 - t0) / 1e6, ($2 - t0) / 1e6 }'; }

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
json_num() { grep -o "\"$1\": *[0-9]*" "$2" | head -n1 | grep -o '[0-9]*$'; }

raw_backup() {
    pg_dumpall -h 127.0.0.1 -p "$PGPORT_" -U postgres -w 2>"$LOGS/raw-dump.err" |
        restic backup --stdin --stdin-filename raw/pg_dumpall.sql --host hasteward >"$LOGS/raw.out" 2>"$LOGS/raw.err"
}
raw_restore() {
    # pg_dumpall output recreates the database, so drop it first (hasteward --force does the
    # same inside its run). No ON_ERROR_STOP: the dump's `CREATE ROLE postgres` fails on the
    # existing role, which is expected and harmless.
    "${PSQL[@]}" -d postgres -c 'DROP DATABASE IF EXISTS pgbench WITH (FORCE)' 2>"$LOGS/raw-drop.err" &&
        restic dump "$RAW_ID" raw/pg_dumpall.sql 2>"$LOGS/raw-dump.err" |
        "${PSQL[@]}" -d postgres >/dev/null 2>"$LOGS/raw-psql.err"
}
check_ok() { # check_ok WHAT: fails loudly when the last measured command failed
    if [[ $M_RC -ne 0 ]]; then
        tail -n 30 "$LOGS"/*.err >&2 || true
        die "$1 failed (exit $M_RC)"
    fi
}
quiesce() { sql 'CHECKPOINT' >/dev/null; sync; }
pgbench_init() {
    sql 'DROP DATABASE IF EXISTS pgbench WITH (FORCE)' >/dev/null
    sql 'CREATE DATABASE pgbench' >/dev/null
    pgbench -i -q -s "$1" -h 127.0.0.1 -p "$PGPORT_" -U postgres pgbench >"$LOGS/pgbench.log" 2>&1 ||
        { cat "$LOGS/pgbench.log" >&2; die "pgbench -i failed"; }
    sql 'VACUUM ANALYZE' pgbench >/dev/null
}
db_mb() { sql "SELECT round(pg_database_size('pgbench') / 1048576.0)"; }
check_rows() {
    local n
    n=$(sql 'SELECT count(*) FROM pgbench_accounts' pgbench)
    [[ $n -eq $(( 100000 * SCALE )) ]] || die "$1: pgbench_accounts has $n rows, expected $(( 100000 * SCALE ))"
}

restic init >"$LOGS/init.log" 2>&1 || { cat "$LOGS/init.log" >&2; die "restic init failed"; }

# --- 1. small dataset: hasteward peak RSS (is it flat as the dump grows?) ------------------------
log "pgbench -i -s $SMALL_SCALE (small dataset)"
pgbench_init "$SMALL_SCALE"
SMALL_MB=$(db_mb)
SMALL_RSS=()
for i in $(seq 1 "$SMALL_ROUNDS"); do
    quiesce
    measure hw backup "${HW_SMALL[@]}"
    check_ok "hasteward backup (small)"
    SMALL_RSS+=("$M_HWM")
    SMALL_BYTES=$(json_num bytes "$LOGS/hw.out")
    log "small  hasteward backup  wall ${M_WALL}s cpu ${M_CPU}s peak $(mib "$M_HWM") MiB"
done

# --- 2. main dataset: backups ---------------------------------------------------------------------
log "pgbench -i -s $SCALE (main dataset)"
pgbench_init "$SCALE"
MAIN_MB=$(db_mb)
log "database pgbench: $MAIN_MB MB (small: $SMALL_MB MB)"

# Warm-up (not measured): the first backup writes the data; every measured one deduplicates.
log "warm-up backups (not measured)"
measure hw backup "${HW_MAIN[@]}"; check_ok "hasteward backup (warm-up)"
MAIN_BYTES=$(json_num bytes "$LOGS/hw.out")
measure raw_backup; check_ok "raw backup (warm-up)"

B_HW_BUSY=() B_RAW_BUSY=() B_HW_WALL=() B_HW_CPU=() B_HW_RSS=() B_RAW_WALL=() B_PRE=() B_STREAM=() B_POST=()
for i in $(seq 1 "$ROUNDS"); do
    quiesce
    measure hw backup "${HW_MAIN[@]}"; check_ok "hasteward backup"
    B_HW_BUSY+=("$M_BUSY") B_HW_WALL+=("$M_WALL") B_HW_CPU+=("$M_CPU") B_HW_RSS+=("$M_HWM")
    phases backup
    B_PRE+=("$P_PRE") B_STREAM+=("$P_STREAM") B_POST+=("$P_POST")
    log "round $i  hasteward backup  wall ${M_WALL}s cpu ${M_CPU}s peak $(mib "$M_HWM") MiB (before/stream/after ${P_PRE}/${P_STREAM}/${P_POST}s)"
    log "          children: $(children)"
    quiesce
    measure raw_backup; check_ok "raw backup"
    B_RAW_BUSY+=("$M_BUSY") B_RAW_WALL+=("$M_WALL")
    log "round $i  raw backup        wall ${M_WALL}s machine cpu ${M_BUSY}s"
done
RAW_ID=$(restic snapshots --json --path /raw/pg_dumpall.sql | grep -o '"id":"[0-9a-f]\{64\}"' | tail -n1 | cut -d'"' -f4)
[[ -n $RAW_ID ]] || die "no raw snapshot found"

# --- 3. restores -------------------------------------------------------------------------------
R_HW_BUSY=() R_RAW_BUSY=() R_HW_WALL=() R_HW_CPU=() R_HW_RSS=() R_RAW_WALL=() R_PRE=() R_STREAM=() R_POST=()
RAW_ERRORS=0
for i in $(seq 1 "$ROUNDS"); do
    quiesce
    measure hw restore "${HW_MAIN[@]}" --snapshot latest --force; check_ok "hasteward restore"
    R_HW_BUSY+=("$M_BUSY") R_HW_WALL+=("$M_WALL") R_HW_CPU+=("$M_CPU") R_HW_RSS+=("$M_HWM")
    phases dump
    R_PRE+=("$P_PRE") R_STREAM+=("$P_STREAM") R_POST+=("$P_POST")
    log "round $i  hasteward restore wall ${M_WALL}s cpu ${M_CPU}s peak $(mib "$M_HWM") MiB (before/stream/after ${P_PRE}/${P_STREAM}/${P_POST}s)"
    log "          children: $(children)"
    check_rows "hasteward restore"
    quiesce
    measure raw_restore; check_ok "raw restore"
    check_rows "raw restore"
    RAW_ERRORS=$(grep -c 'ERROR' "$LOGS/raw-psql.err" || true)
    R_RAW_BUSY+=("$M_BUSY") R_RAW_WALL+=("$M_WALL")
    log "round $i  raw restore       wall ${M_WALL}s machine cpu ${M_BUSY}s (psql errors: $RAW_ERRORS)"
done
RAW_ERROR_TEXT=$(grep 'ERROR' "$LOGS/raw-psql.err" | head -n3 || true)

# --- 5. exec relay: the same backup and restore through the API simulator's pod exec ------------
# The simulator serves a CNPG Cluster "bench" whose primary pod's exec runs locally with PGHOST
# pointing at this server's socket directory: the dump (pg_dumpall in "the pod") reaches
# hasteward over the exec websocket, through kube-rs, as from a real API server. The local side
# is the same hasteward backup/restore as above (pg_dumpall spawned directly). Alternating rounds.
E_RELAY_WALL=() E_LOCAL_WALL=() E_RELAY_STREAM=() E_LOCAL_STREAM=() E_RELAY_CPU=() E_RELAY_RSS=()
ER_RELAY_WALL=() ER_LOCAL_WALL=()
RELAY_BYTES=0
if (( EXEC_ROUNDS > 0 )); then
    mkdir -p "$TMP/kube"
    cat >"$TMP/kube/fixtures.yaml" <<FIXTURES
apiVersion: v1
kind: Namespace
metadata: {name: bench}
---
apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata: {name: bench, namespace: bench}
spec: {instances: 1}
status: {currentPrimary: bench-1, instanceNames: [bench-1]}
---
apiVersion: v1
kind: Pod
metadata: {name: bench-1, namespace: bench}
spec: {containers: [{name: postgres, image: postgres}]}
status:
  phase: Running
  containerStatuses: [{name: postgres, ready: true, restartCount: 0, image: postgres, imageID: ""}]
---
apiVersion: kubesim.hasteward.dev/v1
kind: PodExec
namespace: bench
pod: bench-1
env: {PGHOST: "$TMP/pg", PGPORT: "$PGPORT_"}
pathPrepend: ["$PG_BIN"]
FIXTURES
    "$KUBESIM" --fixtures "$TMP/kube" --kubeconfig-out "$TMP/kube/kubeconfig" >"$LOGS/kubesim.log" 2>&1 &
    KUBESIM_PID=$!
    for _ in $(seq 1 100); do [[ -s $TMP/kube/kubeconfig ]] && break; nap 0.1; done
    [[ -s $TMP/kube/kubeconfig ]] || { cat "$LOGS/kubesim.log" >&2; die "the API simulator did not start"; }
    HW_RELAY=(--kubeconfig "$TMP/kube/kubeconfig" -e cnpg -c bench -n bench
        --repo "$REPO" --password-file "$TMP/secrets/repo.pw" -o json)
    for i in $(seq 1 "$EXEC_ROUNDS"); do
        quiesce
        measure hw backup "${HW_RELAY[@]}"; check_ok "hasteward backup through the exec relay"
        phases backup
        E_RELAY_WALL+=("$M_WALL") E_RELAY_STREAM+=("$P_STREAM") E_RELAY_CPU+=("$M_CPU") E_RELAY_RSS+=("$M_HWM")
        RELAY_BYTES=$(json_num bytes "$LOGS/hw.out")
        log "round $i  relay backup      wall ${M_WALL}s stream ${P_STREAM}s cpu ${M_CPU}s peak $(mib "$M_HWM") MiB"
        quiesce
        measure hw backup "${HW_MAIN[@]}"; check_ok "hasteward backup (local pipe)"
        phases backup
        E_LOCAL_WALL+=("$M_WALL") E_LOCAL_STREAM+=("$P_STREAM")
        log "round $i  local backup      wall ${M_WALL}s stream ${P_STREAM}s"
    done
    for i in $(seq 1 "$EXEC_ROUNDS"); do
        quiesce
        measure hw restore "${HW_RELAY[@]}" --snapshot latest --force; check_ok "hasteward restore through the exec relay"
        check_rows "relay restore"
        ER_RELAY_WALL+=("$M_WALL")
        log "round $i  relay restore     wall ${M_WALL}s"
        quiesce
        measure hw restore "${HW_MAIN[@]}" --snapshot latest --force; check_ok "hasteward restore (local pipe)"
        check_rows "local restore"
        ER_LOCAL_WALL+=("$M_WALL")
        log "round $i  local restore     wall ${M_WALL}s"
    done
    kill "$KUBESIM_PID" 2>/dev/null || true
    wait "$KUBESIM_PID" 2>/dev/null || true
    KUBESIM_PID=
fi

# --- 4. fixed cost of one restic invocation that opens the repository (key derivation + index) ---
restic_open() { restic cat config >/dev/null 2>&1; }
OPEN_WALL=()
for i in 1 2 3 4 5; do
    measure restic_open; check_ok "restic cat config"
    OPEN_WALL+=("$M_WALL")
done

# --- report ------------------------------------------------------------------------------------
bw_hw=$(median "${B_HW_WALL[@]}") bw_raw=$(median "${B_RAW_WALL[@]}")
rw_hw=$(median "${R_HW_WALL[@]}") rw_raw=$(median "${R_RAW_WALL[@]}")
b_cpu=$(median "${B_HW_CPU[@]}") r_cpu=$(median "${R_HW_CPU[@]}")
b_rss=$(mib "$(median "${B_HW_RSS[@]}")") s_rss=$(mib "$(median "${SMALL_RSS[@]}")")
r_rss=$(mib "$(median "${R_HW_RSS[@]}")")
b_ratio=$(ratio "$bw_hw" "$bw_raw") r_ratio=$(ratio "$rw_hw" "$rw_raw")
b_pre=$(median "${B_PRE[@]}") b_stream=$(median "${B_STREAM[@]}") b_post=$(median "${B_POST[@]}")
r_pre=$(median "${R_PRE[@]}") r_stream=$(median "${R_STREAM[@]}") r_post=$(median "${R_POST[@]}")
bs_ratio=$(ratio "$b_stream" "$bw_raw") rs_ratio=$(ratio "$r_stream" "$rw_raw")
b_extra=$(awk -v a="$bw_hw" -v b="$bw_raw" 'BEGIN { printf "%.3f", a - b }')
r_extra=$(awk -v a="$rw_hw" -v b="$rw_raw" 'BEGIN { printf "%.3f", a - b }')
open_wall=$(median "${OPEN_WALL[@]}")
NCPU=$(nproc)
busy() { # busy WALL BUSY: "CPU-s (xx % of N cores)"
    awk -v w="$1" -v b="$2" -v n="$NCPU" 'BEGIN { printf "%.2f (%.0f %%)", b, 100 * b / (w * n) }'
}
bb_hw=$(busy "$bw_hw" "$(median "${B_HW_BUSY[@]}")") bb_raw=$(busy "$bw_raw" "$(median "${B_RAW_BUSY[@]}")")
rb_hw=$(busy "$rw_hw" "$(median "${R_HW_BUSY[@]}")") rb_raw=$(busy "$rw_raw" "$(median "${R_RAW_BUSY[@]}")")
verdict() { awk -v v="$1" -v t="$2" 'BEGIN { print (v <= t) ? "met" : "MISSED" }'; }
flat=$(awk -v a="$b_rss" -v b="$s_rss" 'BEGIN { d = a - b; if (d < 0) d = -d; print (d <= 2 && a <= 32) ? "met" : "MISSED" }')

EXEC_REPORT="exec relay: skipped (BENCH_EXEC_ROUNDS=0)"
if (( EXEC_ROUNDS > 0 )); then
    mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / 1048576 / s }'; }
    ew_relay=$(median "${E_RELAY_WALL[@]}") ew_local=$(median "${E_LOCAL_WALL[@]}")
    es_relay=$(median "${E_RELAY_STREAM[@]}") es_local=$(median "${E_LOCAL_STREAM[@]}")
    erw_relay=$(median "${ER_RELAY_WALL[@]}") erw_local=$(median "${ER_LOCAL_WALL[@]}")
    EXEC_REPORT=$(cat <<REPORT
exec relay: $EXEC_ROUNDS alternating rounds, dump $(mib "$(( RELAY_BYTES / 1024 ))") MiB, pod exec served by hasteward-kubesim on loopback

| metric (median) | through pod exec | local pipe | ratio |
|---|---:|---:|---:|
| backup wall time (s) | $ew_relay | $ew_local | $(ratio "$ew_relay" "$ew_local") |
| backup stream (s) | $es_relay | $es_local | $(ratio "$es_relay" "$es_local") |
| backup stream throughput (MiB/s) | $(mbps "$RELAY_BYTES" "$es_relay") | $(mbps "$RELAY_BYTES" "$es_local") | – |
| backup CPU, hasteward process only (s) | $(median "${E_RELAY_CPU[@]}") | – | – |
| backup peak RSS, hasteward process (MiB) | $(mib "$(median "${E_RELAY_RSS[@]}")") | – | – |
| restore wall time (s) | $erw_relay | $erw_local | $(ratio "$erw_relay" "$erw_local") |

    relay backup wall:  ${E_RELAY_WALL[*]}
    local backup wall:  ${E_LOCAL_WALL[*]}
    relay restore wall: ${ER_RELAY_WALL[*]}
    local restore wall: ${ER_LOCAL_WALL[*]}
REPORT
)
fi

cat <<EOF

## hasteward benchmark

- machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(uname -sr)
- hasteward $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- cmd crates Cargo.toml Cargo.lock 2>/dev/null || echo ' + uncommitted changes') (release build)
- $(restic version | head -n1)
- PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') (fsync=off), pgbench scale $SCALE: database $MAIN_MB MB, dump $(mib "$(( MAIN_BYTES / 1024 ))") MiB; small check at scale $SMALL_SCALE: database $SMALL_MB MB, dump $(mib "$(( SMALL_BYTES / 1024 ))") MiB
- $ROUNDS measured rounds per phase (alternating hasteward / raw, after one unmeasured warm-up backup each); medians; $SMALL_ROUNDS hasteward backups at the small scale

| metric (median) | hasteward | raw pipe | ratio | target | |
|---|---:|---:|---:|---|---|
| backup wall time (s) | $bw_hw | $bw_raw | $b_ratio | ≤ 1.02 | $(verdict "$b_ratio" 1.02) |
| backup: hasteward − raw (s) | $b_extra | – | – | – | |
| backup: before the stream / stream / after (s) | $b_pre / $b_stream / $b_post | $bw_raw (all stream) | $bs_ratio (stream) | – | |
| backup CPU, hasteward process only (s) | $b_cpu | – | – | – | |
| backup: machine CPU busy, all processes (CPU-s, % of $NCPU cores) | $bb_hw | $bb_raw | – | – | |
| backup peak RSS, hasteward process (MiB), $MAIN_MB MB db | $b_rss | – | – | ≤ 32 | $(verdict "$b_rss" 32) |
| backup peak RSS, hasteward process (MiB), $SMALL_MB MB db | $s_rss | – | – | flat | $flat |
| restore wall time (s) | $rw_hw | $rw_raw | $r_ratio | – | |
| restore: hasteward − raw (s) | $r_extra | – | – | – | |
| restore: before the stream / stream / after (s) | $r_pre / $r_stream / $r_post | $rw_raw (all stream) | $rs_ratio (stream) | – | |
| restore CPU, hasteward process only (s) | $r_cpu | – | – | – | |
| restore: machine CPU busy, all processes (CPU-s, % of $NCPU cores) | $rb_hw | $rb_raw | – | – | |
| restore peak RSS, hasteward process (MiB) | $r_rss | – | – | ≤ 32 | $(verdict "$r_rss" 32) |

$EXEC_REPORT

one restic invocation that opens the repository (\`restic cat config\`: key derivation + config): $open_wall s (median of 5)

raw restore: psql without ON_ERROR_STOP reported $RAW_ERRORS error(s) in the last round (expected: the existing role):
$(sed 's/^/    /' <<<"$RAW_ERROR_TEXT")

per-round values (s / KiB):
    backup  hasteward wall: ${B_HW_WALL[*]}
    backup  raw wall:       ${B_RAW_WALL[*]}
    backup  hasteward cpu:  ${B_HW_CPU[*]}
    backup  hasteward rss:  ${B_HW_RSS[*]}
    small   hasteward rss:  ${SMALL_RSS[*]}
    restore hasteward wall: ${R_HW_WALL[*]}
    restore raw wall:       ${R_RAW_WALL[*]}
    restore hasteward cpu:  ${R_HW_CPU[*]}
    restore hasteward rss:  ${R_HW_RSS[*]}
    backup  before/stream/after: ${B_PRE[*]} / ${B_STREAM[*]} / ${B_POST[*]}
    restore before/stream/after: ${R_PRE[*]} / ${R_STREAM[*]} / ${R_POST[*]}
    restic cat config wall: ${OPEN_WALL[*]}
    backup  machine cpu hasteward / raw: ${B_HW_BUSY[*]} / ${B_RAW_BUSY[*]}
    restore machine cpu hasteward / raw: ${R_HW_BUSY[*]} / ${R_RAW_BUSY[*]}
EOF
