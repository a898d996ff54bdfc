# shellcheck shell=bash
# Sourced by scripts/package.sh (from the repository root): nfpm, the
# packager, pinned and built from the Go module proxy into .tmp/bin, like
# the test tools in scripts/lib/deps.sh. Sets NFPM.
nfpm_version=v2.45.2
NFPM="$PWD/.tmp/bin/nfpm"
if [ ! -x "$NFPM" ] || [ "$(cat "$PWD/.tmp/bin/.nfpm.version" 2>/dev/null)" != "$nfpm_version" ]; then
  echo "installing nfpm $nfpm_version" >&2
  GOBIN="$PWD/.tmp/bin" go install "github.com/goreleaser/nfpm/v2/cmd/nfpm@$nfpm_version" \
    || { echo "package.sh: could not install nfpm $nfpm_version from the Go module proxy (go install github.com/goreleaser/nfpm/v2/cmd/nfpm@$nfpm_version)" >&2; exit 1; }
  echo "$nfpm_version" > "$PWD/.tmp/bin/.nfpm.version"
fi
export NFPM
