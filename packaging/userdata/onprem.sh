#!/bin/bash
# First-boot script for an on-prem joblet node (cloud-init user data, a
# kickstart %post, or by hand as root): install the package, bootstrap from
# the directory store every node shares, start the service. Every node runs
# the same script; the first one creates the CA in the store (create-only
# writes, so nodes started together agree on one).
set -euo pipefail

# The fleet's root CA, pinned: paste the fingerprint `joblet certs init`
# printed. A node then refuses a store holding another root (nothing written);
# left empty, the first join trusts the root it finds, and says so.
JOBLET_CA_FINGERPRINT=${JOBLET_CA_FINGERPRINT:-}

# The package built by scripts/package.sh, copied here by your provisioning,
# and the shared store (NFS, a replicated volume), mounted before this runs.
pkg=${JOBLET_PACKAGE:-/tmp/joblet.deb}
pki=${JOBLET_PKI:-/srv/joblet-pki}
case "$pkg" in
  *.deb) dpkg -i "$pkg" ;;
  *.rpm) rpm -Uvh "$pkg" ;;
  *) echo "user data: $pkg is neither a .deb nor a .rpm" >&2; exit 1 ;;
esac

# The fleet's settings, in the file that both bootstrap (below, with
# --settings) and the service read. The address in this node's certificate and in the client
# configs defaults to the primary IP; set JOBLET_SERVER_ADDRESS to override.
cat >> /etc/default/joblet <<SETTINGS
USE_SECRETS_MANAGER=false
JOBLET_STORE=dir:$pki
SETTINGS
if [ -n "${JOBLET_SERVER_ADDRESS:-}" ]; then
  echo "JOBLET_SERVER_ADDRESS=$JOBLET_SERVER_ADDRESS" >> /etc/default/joblet
fi
if [ -n "$JOBLET_CA_FINGERPRINT" ]; then
  echo "JOBLET_CA_FINGERPRINT=$JOBLET_CA_FINGERPRINT" >> /etc/default/joblet
fi
joblet certs bootstrap --settings /etc/default/joblet
systemctl enable --now joblet
