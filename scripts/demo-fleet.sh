#!/usr/bin/env bash
# A fleet on one machine: moto (standing in for AWS Secrets Manager, started
# through the launcher the tests use, test/harness/moto_launcher.py, which
# corrects where moto differs from AWS), three
# joblet nodes on 127.0.0.1 bootstrapped through it with the drop-in script,
# HAProxy in TLS passthrough (mode tcp) in front of them on 127.0.0.2, then
# rnx through the balancer with the config from node 1. Needs moto_server
# and haproxy (scripts/test.sh installs haproxy); everything binds to
# loopback and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in moto_server python3 haproxy; do
  command -v "$tool" >/dev/null || { echo "demo-fleet.sh: $tool is required (see README)" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/joblet-fleet.XXXXXX")
pids=()
# On failure, show the logs (nodes, moto, HAProxy) before they are deleted.
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$rc" != 0 ]; then
    for log in "$work"/*.log; do
      [ -s "$log" ] || continue
      echo "== $(basename "$log")" >&2
      cat "$log" >&2
    done
  fi
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port_taken() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
# wait_port HOST PORT PID: until something listens there, failing at once
# when the process PID has exited.
wait_port() {
  for _ in $(seq 1 100); do
    port_taken "$1" "$2" && return 0
    kill -0 "$3" 2>/dev/null || { echo "demo-fleet.sh: the process meant to listen on $1:$2 exited" >&2; return 1; }
    sleep 0.1
  done
  echo "demo-fleet.sh: nothing listening on $1:$2 after 10s" >&2
  return 1
}

echo "== build"
# The binaries name the commit they were built from: -buildvcs=true even where
# GOFLAGS=-buildvcs=false, and the commit stamped as package.sh does (Go does
# not stamp from a git worktree).
go build -buildvcs=true -ldflags "-X github.com/ehsaniara/joblet/internal/buildinfo.Commit=$(git rev-parse --short=12 HEAD 2>/dev/null || true)" \
  -o "$work/bin/" ./cmd/joblet ./cmd/rnx
"$work/bin/joblet" version
export PATH="$work/bin:$PATH" JOBLET_BIN="$work/bin/joblet"

moto_port=$(free_port)
echo "== moto (Secrets Manager) on 127.0.0.1:$moto_port"
python3 test/harness/moto_launcher.py -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 & pids+=($!)
wait_port 127.0.0.1 "$moto_port" "$!"
export AWS_ENDPOINT_URL_SECRETS_MANAGER="http://127.0.0.1:$moto_port" AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo \
  AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:1 USE_SECRETS_MANAGER=true EC2_REGION=us-east-1

lb="127.0.0.2:$(free_port)"
backends=""
for i in 1 2 3; do
  port=$(free_port)
  if port_taken 127.0.0.1 "$port"; then
    echo "demo-fleet.sh: 127.0.0.1:$port was taken by another process as node $i was to use it: run the demo again" >&2
    exit 1
  fi
  echo "== node $i on 127.0.0.1:$port"
  JOBLET_HOME="$work/node$i" JOBLET_SERVER_ADDRESS=127.0.0.1 JOBLET_LISTEN_ADDRESS=127.0.0.1 JOBLET_SERVER_PORT=$port \
    JOBLET_PUBLIC_ADDRESS="$lb" JOBLET_NODE_ID="node-$i" scripts/certs_gen_with_secretsmanager.sh
  joblet server --config "$work/node$i/config/joblet-config.yml" 2>"$work/node$i.log" & pids+=($!)
  wait_port 127.0.0.1 "$port" "$!"
  backends+="  server node$i 127.0.0.1:$port check inter 1s"$'\n'
done

echo "== HAProxy (mode tcp) on $lb"
cat >"$work/haproxy.cfg" <<CFG
defaults
  mode tcp
  timeout connect 2s
  timeout client 60s
  timeout server 60s
frontend joblet
  bind $lb
  default_backend nodes
backend nodes
  balance roundrobin
$backends
CFG
haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 & pids+=($!)
wait_port "${lb%:*}" "${lb##*:}" "$!"

echo "== the shared secrets, as the operator sees them"
if command -v aws >/dev/null; then
  AWS_ENDPOINT_URL="$AWS_ENDPOINT_URL_SECRETS_MANAGER" AWS_DEFAULT_REGION=us-east-1 aws secretsmanager list-secrets \
    --filters Key=name,Values=joblet/ --query 'SecretList[*].[Name,Description]' --output table
fi
export RNX_CONFIG="$work/node1/config/rnx-config.yml"
echo "node 1's rnx-config.yml points at: $(grep -m1 'address:' "$RNX_CONFIG")"

echo "== six requests through the balancer, one config"
for _ in 1 2 3 4 5 6; do rnx info | grep 'node id'; done
echo "== a job through the balancer, followed on the same connection"
rnx job run --follow sh -c 'echo "hello from a fleet node"'
echo "== rnx job run --follow exits with the job's exit code"
code=0
rnx job run --follow -- sh -c 'echo "this job exits with 3"; exit 3' || code=$?
echo "rnx job run --follow exited with $code"
[ "$code" = 3 ] || { echo "demo-fleet.sh: expected exit code 3" >&2; exit 1; }
echo "done"
