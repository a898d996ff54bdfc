#!/usr/bin/env bash
# One command for every benchmark: starts its own moto and HAProxy on
# loopback, measures bootstrap, detection, fleet convergence, a quota-limited
# burst, serving (against a bare TLS and a bare gRPC server), one rnx command
# (against a minimal client), memory and crypto side by side with their
# baselines, and writes BENCHMARKS.md. About eight minutes on a quiet 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in moto_server haproxy openssl; do
  command -v "$tool" >/dev/null || { echo "bench.sh: $tool is required (see README; scripts/test.sh installs haproxy)" >&2; exit 1; }
done
BENCH_OUT="$PWD/BENCHMARKS.md" go test -tags bench -run TestWriteBenchmarks -count=1 -timeout 30m -v ./bench/ 2>&1 | grep -v 'level=' | tail -20
echo "wrote $PWD/BENCHMARKS.md"
