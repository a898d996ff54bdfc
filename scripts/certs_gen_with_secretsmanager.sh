#!/usr/bin/env bash
# Drop-in for the spec's EC2 user data: bootstrap this node's certificates,
# sharing the CA and the client certificates through AWS Secrets Manager.
# Settings come from the environment the spec documents: USE_SECRETS_MANAGER
# (default auto: Secrets Manager on EC2), SECRETS_PREFIX, FORCE_REGENERATE,
# EC2_REGION, JOBLET_SERVER_ADDRESS, JOBLET_ADDITIONAL_NAMES,
# JOBLET_PUBLIC_ADDRESS, JOBLET_HOME. Arguments are passed to
# `joblet certs bootstrap`. The binary: $JOBLET_BIN, else joblet on PATH,
# else /usr/local/bin/joblet.
set -euo pipefail
bin=${JOBLET_BIN:-$(command -v joblet 2>/dev/null || echo /usr/local/bin/joblet)}
if [ ! -x "$bin" ]; then
  echo "certs_gen_with_secretsmanager.sh: the joblet binary is not at $bin: install it or set JOBLET_BIN" >&2
  exit 1
fi
# USE_SECRETS_MANAGER defaults to auto in joblet itself: not exported here,
# so that --settings FILE and a re-run on an installed node (which keeps its
# store) decide when the environment does not.
exec "$bin" certs bootstrap "$@"
