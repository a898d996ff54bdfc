#!/usr/bin/env bash
# The project's test command: installs and checks the real components the
# tests use (ARCHITECTURE.md, "Real components in tests"), then runs vet and
# every test with the race detector. A missing component is a failure, never
# a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
fail() { echo "test.sh: $*" >&2; exit 1; }

if ! need haproxy; then
  if [ "$(id -u)" = 0 ] && need apt-get; then
    echo "installing haproxy (Debian package)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy) >/dev/null \
      || fail "could not install haproxy with apt-get"
  else
    fail "haproxy is missing: install the Debian package haproxy (apt-get install haproxy)"
  fi
fi
need openssl || fail "openssl is missing: apt-get install openssl"
need moto_server || fail "moto_server is missing: pip install 'moto[server]' (the machine image ships it)"
need aws || fail "the aws CLI is missing: pip install awscli (the machine image ships it)"

# The EC2 metadata mock, pinned, built from the Go module proxy into .tmp/bin.
mock_version=v1.13.0
export GOBIN="$PWD/.tmp/bin"
if [ ! -x "$GOBIN/ec2-metadata-mock" ] || [ "$(cat "$GOBIN/.ec2-metadata-mock.version" 2>/dev/null)" != "$mock_version" ]; then
  echo "installing ec2-metadata-mock $mock_version"
  go install "github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock@$mock_version" \
    || fail "could not install ec2-metadata-mock $mock_version from the Go module proxy"
  echo "$mock_version" > "$GOBIN/.ec2-metadata-mock.version"
fi
export EC2_METADATA_MOCK="$GOBIN/ec2-metadata-mock"
unset GOBIN

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
[ -z "$unformatted" ] || fail "gofmt would change: $unformatted"
go vet ./...
go test -race -count=1 -timeout 20m ./... "$@"

# Every fuzz target, briefly (JOBLET_FUZZTIME, default 50000 executions
# each); a crash it finds is saved under testdata/fuzz and fails the run.
# A count, not a duration: with a duration Go 1.26's fuzz coordinator can
# report its own deadline as a failure (golang/go#75804, fixed in 1.27).
for pkg in ./internal/pki ./internal/config; do
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz'); do
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "${JOBLET_FUZZTIME:-50000x}" "$pkg"
  done
done
