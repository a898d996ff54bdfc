# Sourced by scripts/test.sh and scripts/reliability.sh (from the repository
# root): installs or checks the real components the tests use
# (ARCHITECTURE.md, "Real components in tests"). Missing means failure.
need() { command -v "$1" >/dev/null 2>&1; }
fail() { echo "test.sh: $*" >&2; exit 1; }

# Debian packages, installed with apt-get when run as root and missing:
# haproxy (an NLB in TLS passthrough), systemd-analyze (verifies the unit;
# Debian package systemd), dpkg-deb (checks the .deb) and rpm (checks the
# .rpm's file list) for TestPackage; strace (a job's ptrace of another
# process is refused) and unshare (util-linux: a job's user namespace is);
# systemd-nspawn (Debian package systemd-container) and debootstrap, which
# boot real systemd over a Debian root for TestSystemdPackage.
missing=""
for pair in haproxy:haproxy systemd-analyze:systemd dpkg-deb:dpkg rpm:rpm strace:strace unshare:util-linux systemd-nspawn:systemd-container debootstrap:debootstrap; do
  need "${pair%%:*}" || missing="$missing ${pair#*:}"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && need apt-get; then
    echo "installing$missing (Debian packages)"
    # shellcheck disable=SC2086 # one word per package
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing) >/dev/null \
      || fail "could not install$missing with apt-get"
  else
    fail "missing Debian packages:$missing: install them (apt-get install$missing)"
  fi
fi
# nftables: the job runner refuses the EC2 metadata endpoint to the job user
# with an nft owner rule in jobs.network host mode, and its test needs it.
if ! need nft; then
  if [ "$(id -u)" = 0 ] && need apt-get; then
    echo "installing nftables (Debian package)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables) >/dev/null \
      || fail "could not install nftables with apt-get"
  else
    fail "nft is missing: install the Debian package nftables (apt-get install nftables)"
  fi
fi
need openssl || fail "openssl is missing: apt-get install openssl"
need moto_server || fail "moto_server is missing: pip install 'moto[server]' (the machine image ships it)"
need aws || fail "the aws CLI is missing: pip install awscli (the machine image ships it)"

# Go tools, each pinned and built from the Go module proxy into .tmp/bin
# (again only when its version changes): go_tool NAME PACKAGE VERSION.
export GOBIN="$PWD/.tmp/bin"
go_tool() {
  if [ ! -x "$GOBIN/$1" ] || [ "$(cat "$GOBIN/.$1.version" 2>/dev/null)" != "$3" ]; then
    echo "installing $1 $3"
    go install "$2@$3" || fail "could not install $1 $3 from the Go module proxy (go install $2@$3)"
    echo "$3" > "$GOBIN/.$1.version"
  fi
}
# The EC2 metadata mock.
go_tool ec2-metadata-mock github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock v1.13.0
export EC2_METADATA_MOCK="$GOBIN/ec2-metadata-mock"
# grpcurl: a gRPC client nobody here wrote, for the health and reflection tests.
go_tool grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl v1.9.3
export GRPCURL="$GOBIN/grpcurl"
# The AWS Lambda Runtime Interface Emulator: runs the Lambda handlers
# (the rotator, the issuer) for harness.StartLambda. Its version tags are
# not served by the Go module proxy; this pseudo-version is.
go_tool aws-lambda-rie github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie v0.0.0-20261030222936-bef5c4ba774d
export AWS_LAMBDA_RIE="$GOBIN/aws-lambda-rie"
# gotestsum: runs the tests with go test's own output and keeps every
# event, so a run ends with its slowest tests (CI time).
go_tool gotestsum gotest.tools/gotestsum v1.13.0
export GOTESTSUM="$GOBIN/gotestsum"

# nfpm, pinned, the same way: scripts/package.sh builds the packages with
# it (TestPackage); installed here so that a failure shows before the tests.
# shellcheck source=scripts/lib/nfpm.sh
. scripts/lib/nfpm.sh
