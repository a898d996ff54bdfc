#!/usr/bin/env bash
# Embedded mode on one machine, no root and no AWS: build, bootstrap
# certificates into a temporary JOBLET_HOME, start a node on 127.0.0.1, run a
# job through rnx over mutual TLS, print its output, stop the node.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d "${TMPDIR:-/tmp}/joblet-demo.XXXXXX")
trap 'kill "${node_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
port=${JOBLET_SERVER_PORT:-50051}

echo "== build"
go build -o "$work/bin/" ./cmd/joblet ./cmd/rnx
export PATH="$work/bin:$PATH"

echo "== bootstrap certificates (embedded mode) into $work/home"
export JOBLET_HOME="$work/home" USE_SECRETS_MANAGER=false \
  JOBLET_SERVER_ADDRESS=127.0.0.1 JOBLET_LISTEN_ADDRESS=127.0.0.1 JOBLET_SERVER_PORT="$port"
joblet certs bootstrap

echo "== start the node on 127.0.0.1:$port"
joblet server --config "$JOBLET_HOME/config/joblet-config.yml" 2>"$work/node.log" &
node_pid=$!
export RNX_CONFIG="$JOBLET_HOME/config/rnx-config.yml"
for _ in $(seq 1 100); do rnx info >/dev/null 2>&1 && break; sleep 0.1; done
rnx info

echo "== run a job"
id=$(rnx job run sh -c 'echo "hello from job on $(hostname)"; uname -sr')
echo "job id: $id"
rnx job log "$id" --follow
rnx --node=default job list

echo "== a reader may look but not run"
rnx --node reader job run true || echo "(refused, as it should be)"

echo "== stop the node"
kill "$node_pid"; wait "$node_pid" 2>/dev/null || true
node_pid=
echo "done"
