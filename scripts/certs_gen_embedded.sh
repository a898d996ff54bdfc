#!/usr/bin/env bash
# Embedded mode (no AWS): the node keeps its own CA and client certificates
# in a private store under $JOBLET_HOME. Same settings and arguments as
# certs_gen_with_secretsmanager.sh, except USE_SECRETS_MANAGER.
set -euo pipefail
bin=${JOBLET_BIN:-$(command -v joblet 2>/dev/null || echo /usr/local/bin/joblet)}
if [ ! -x "$bin" ]; then
  echo "certs_gen_embedded.sh: the joblet binary is not at $bin: install it or set JOBLET_BIN" >&2
  exit 1
fi
case "${USE_SECRETS_MANAGER:-false}" in
  false|"") ;;
  *) echo "certs_gen_embedded.sh: USE_SECRETS_MANAGER=$USE_SECRETS_MANAGER: this script is embedded mode; use certs_gen_with_secretsmanager.sh for Secrets Manager" >&2
     exit 2 ;;
esac
export USE_SECRETS_MANAGER=false
exec "$bin" certs bootstrap "$@"
