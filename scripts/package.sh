#!/usr/bin/env bash
# Builds the joblet packages into dist/:
#   dist/joblet_<version>-1_<arch>.deb and dist/joblet-<version>-1.<arch>.rpm
# with /usr/bin/joblet and /usr/bin/rnx (version, commit and build date
# stamped), the systemd unit, /etc/default/joblet, the drop-in scripts and
# /opt/joblet (packaging/nfpm.yaml lists it all).
#
#   VERSION   the version (default: `git describe --tags --always --dirty`,
#             made valid for dpkg and rpm, below)
#   GOARCH    the target architecture (default: go env GOARCH)
#   DIST      the output directory (default: dist)
#
# The package and both binaries carry the same version string.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "package.sh: $*" >&2; exit 1; }

# The version. dpkg wants a leading digit and gives '-' a meaning (the
# Debian revision), rpm refuses '-' in a version: so a tag's 'v' goes and
# git describe's "-N-gHASH" and "-dirty" become "+N.gHASH" and ".dirty",
# which both sort after the tag. No tag at all: 0.0.0+git.HASH.
if [ -n "${VERSION:-}" ]; then
  version=${VERSION#v}
else
  describe=$(git describe --tags --always --dirty --match 'v[0-9]*' 2>/dev/null) \
    || fail "no VERSION given and git describe failed: run from a git checkout or set VERSION=1.2.3"
  case "$describe" in
    v[0-9]*) version=${describe#v}
             version=$(printf '%s' "$version" | sed -E 's/-([0-9]+)-g([0-9a-f]+)/+\1.g\2/; s/-dirty$/.dirty/') ;;
    *)       version="0.0.0+git.${describe%-dirty}"
             [ "$describe" = "${describe%-dirty}" ] || version="$version.dirty" ;;
  esac
fi
[[ "$version" =~ ^[0-9][A-Za-z0-9.+~]*$ ]] \
  || fail "version \"$version\" is not usable by both dpkg and rpm: start with a digit, use only letters, digits, '.', '+' and '~' (no '-'), e.g. VERSION=1.2.3"

commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
[ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || commit="$commit-dirty"
# SOURCE_DATE_EPOCH (reproducible builds) wins over now.
date=$(date -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}" +%Y-%m-%dT%H:%M:%SZ)
goarch=${GOARCH:-$(go env GOARCH)}
dist=${DIST:-dist}

# shellcheck source=scripts/lib/nfpm.sh
. scripts/lib/nfpm.sh

# packaging/nfpm.yaml takes the binaries from .tmp/package: one build at a
# time (a test may run this while you do).
stage=.tmp/package
mkdir -p .tmp "$dist"
exec 9>.tmp/package.lock
flock 9
rm -rf "$stage"
mkdir -p "$stage/bin"
pkg=github.com/ehsaniara/joblet/internal/buildinfo
# Static (no cgo) and stripped: the binaries run on whatever glibc or musl
# the target distribution has. Not -trimpath: it would rebuild every
# package instead of reusing the build cache (2.5 minutes instead of 20 s).
CGO_ENABLED=0 GOOS=linux GOARCH="$goarch" go build -buildvcs=false \
  -ldflags "-s -w -X $pkg.Version=$version -X $pkg.Commit=$commit -X $pkg.Date=$date" \
  -o "$stage/bin/" ./cmd/joblet ./cmd/rnx

for packager in deb rpm; do
  JOBLET_VERSION=$version GOARCH=$goarch "$NFPM" package --config packaging/nfpm.yaml \
    --packager "$packager" --target "$dist/" >&2 \
    || fail "nfpm could not build the $packager package (packaging/nfpm.yaml)"
done
echo "version $version (commit $commit, built $date)"
ls -1 "$dist"/joblet[_-]"$version"[-_]*
