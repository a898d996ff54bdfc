#!/usr/bin/env bash
# Embedded mode on one machine, no root and no AWS: build, bootstrap
# certificates into a temporary JOBLET_HOME, start a node on 127.0.0.1, run a
# job through rnx over mutual TLS, print its output, stop the node.
# JOBLET_SERVER_PORT chooses the port (default 50051).
set -euo pipefail
cd "$(dirname "$0")/.."

port=${JOBLET_SERVER_PORT:-50051}
# Before anything else: a port another process holds would have rnx talk to
# that process, or the node fail to start.
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "demo-embedded.sh: 127.0.0.1:$port is already in use by another process: stop it, or choose a free port with JOBLET_SERVER_PORT (e.g. JOBLET_SERVER_PORT=50052 $0)" >&2
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/joblet-demo.XXXXXX")
# On failure, show the node's log before it is deleted.
cleanup() {
  local rc=$?
  if [ -n "${node_pid:-}" ]; then kill "$node_pid" 2>/dev/null || true; wait "$node_pid" 2>/dev/null || true; fi
  if [ "$rc" != 0 ] && [ -s "$work/node.log" ]; then
    echo "== the node's log ($work/node.log)" >&2
    cat "$work/node.log" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "== build"
# The binaries name the commit they were built from: -buildvcs=true even where
# GOFLAGS=-buildvcs=false, and the commit stamped as package.sh does (Go does
# not stamp from a git worktree).
go build -buildvcs=true -ldflags "-X github.com/ehsaniara/joblet/internal/buildinfo.Commit=$(git rev-parse --short=12 HEAD 2>/dev/null || true)" \
  -o "$work/bin/" ./cmd/joblet ./cmd/rnx
export PATH="$work/bin:$PATH"
joblet version

echo "== bootstrap certificates (embedded mode) into $work/home"
export JOBLET_HOME="$work/home" USE_SECRETS_MANAGER=false \
  JOBLET_SERVER_ADDRESS=127.0.0.1 JOBLET_LISTEN_ADDRESS=127.0.0.1 JOBLET_SERVER_PORT="$port"
joblet certs bootstrap
if [ "$(id -u)" != 0 ]; then
  # Containing a job (its own user, namespaces, cgroup) needs root. Without
  # it the node refuses jobs rather than run them uncontained; this demo
  # opts out explicitly, and the node logs a warning at start. Never on a
  # node that runs other people's commands: docs/JOBS.md.
  echo "== not root: jobs.isolation: none for this demo (jobs run as $(id -un), uncontained; see docs/JOBS.md)"
  printf 'jobs:\n  isolation: none\n' >>"$JOBLET_HOME/config/joblet-config.yml"
fi

echo "== start the node on 127.0.0.1:$port"
joblet server --config "$JOBLET_HOME/config/joblet-config.yml" 2>"$work/node.log" &
node_pid=$!
export RNX_CONFIG="$JOBLET_HOME/config/rnx-config.yml"
ready=
for _ in $(seq 1 100); do
  if ! kill -0 "$node_pid" 2>/dev/null; then
    wait "$node_pid" && rc=0 || rc=$?
    node_pid=
    echo "demo-embedded.sh: the node exited (status $rc) before it was ready" >&2
    exit 1
  fi
  rnx --timeout 2s info >/dev/null 2>&1 && { ready=1; break; }
  sleep 0.1
done
[ -n "$ready" ] || { echo "demo-embedded.sh: the node on 127.0.0.1:$port was not ready within 10s" >&2; exit 1; }
rnx info

echo "== run a job"
id=$(rnx job run sh -c 'echo "hello from job on $(hostname)"; uname -sr')
echo "job id: $id"
rnx job log -f "$id"
rnx --node=default job list

echo "== follow a job: rnx exits with the job's exit code"
code=0
rnx job run --follow -- sh -c 'echo "this job exits with 3"; exit 3' || code=$?
echo "rnx job run --follow exited with $code"
[ "$code" = 3 ] || { echo "demo-embedded.sh: expected exit code 3" >&2; exit 1; }

echo "== a reader may look but not run"
rnx --node reader job run true || echo "(refused, as it should be)"

echo "== stop the node"
kill "$node_pid"; wait "$node_pid" 2>/dev/null || true
node_pid=
echo "done"
