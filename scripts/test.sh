#!/usr/bin/env bash
# The project's test command: installs and checks the real components the
# tests use (ARCHITECTURE.md, "Real components in tests"), then runs vet and
# every test with the race detector. A missing component is a failure, never
# a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

# The real components: haproxy, openssl, moto, the aws CLI, the EC2 metadata mock.
. scripts/lib/deps.sh
unset GOBIN

phase() { echo "== $1 (at ${SECONDS}s)"; }
phase "gofmt, go vet"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
[ -z "$unformatted" ] || fail "gofmt would change: $unformatted"
go vet ./...
# go test's own output (standard-quiet), every event kept: the run ends
# with the tests that took longest, failed or not. -parallel 4: the
# end-to-end tests that call t.Parallel (test/parallel_test.go) mostly wait
# on processes and timers, so four at once on two cores.
phase "tests"
rc=0
"$GOTESTSUM" --format standard-quiet --jsonfile .tmp/test-events.json -- -race -count=1 -timeout 50m -parallel 4 ./... "$@" || rc=$?
echo "== slowest tests (over 20 s):"
"$GOTESTSUM" tool slowest --jsonfile .tmp/test-events.json --threshold 20s || true
[ "$rc" = 0 ] || exit "$rc"
phase "fuzz"

# Every fuzz target, briefly (JOBLET_FUZZTIME, default 50000 executions
# each); a crash it finds is saved under testdata/fuzz and fails the run.
# A count, not a duration: with a duration Go 1.26's fuzz coordinator can
# report its own deadline as a failure (golang/go#75804, fixed in 1.27).
for pkg in ./internal/pki ./internal/config; do
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz'); do
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "${JOBLET_FUZZTIME:-50000x}" "$pkg"
  done
done
phase "done"
