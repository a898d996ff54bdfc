#!/bin/bash
# EC2 user data for a joblet node whose fleet shares its CA through AWS
# Secrets Manager: install the package, bootstrap, start the service. Every
# instance runs the same script; the first one creates the CA (instances
# started together agree on one). The instance role needs the policy from
# `joblet certs iam-policy --for bootstrap` (`--for node` once the fleet
# exists) and s3:GetObject on the package.
set -euo pipefail

# The fleet's root CA, pinned: paste the fingerprint `joblet certs init`
# printed. A node then refuses a store holding another root (nothing written);
# left empty, the first join trusts the root it finds, and says so.
JOBLET_CA_FINGERPRINT=${JOBLET_CA_FINGERPRINT:-}

# The package built by scripts/package.sh, where you publish it (a .deb for
# Debian/Ubuntu AMIs, a .rpm for Amazon Linux and RHEL).
JOBLET_PACKAGE_URL=${JOBLET_PACKAGE_URL:-s3://my-artifacts/joblet/joblet_1.2.3_amd64.deb}
pkg=${JOBLET_PACKAGE:-/tmp/$(basename "$JOBLET_PACKAGE_URL")}
[ -f "$pkg" ] || aws s3 cp "$JOBLET_PACKAGE_URL" "$pkg"
case "$pkg" in
  *.deb) dpkg -i "$pkg" ;;
  *.rpm) rpm -Uvh "$pkg" ;;
  *) echo "user data: $pkg is neither a .deb nor a .rpm" >&2; exit 1 ;;
esac

# The fleet's settings, in the file that both bootstrap (below, with
# --settings) and the service read. The region and the node id come from the instance.
cat >> /etc/default/joblet <<'SETTINGS'
USE_SECRETS_MANAGER=true
SECRETS_PREFIX=joblet
SETTINGS
# Behind an NLB, every node names it (a SAN, and the address in the client
# configs): echo 'JOBLET_PUBLIC_ADDRESS=joblet.internal.example:443' >> /etc/default/joblet
if [ -n "$JOBLET_CA_FINGERPRINT" ]; then
  echo "JOBLET_CA_FINGERPRINT=$JOBLET_CA_FINGERPRINT" >> /etc/default/joblet
fi
/usr/share/joblet/certs_gen_with_secretsmanager.sh --settings /etc/default/joblet
systemctl enable --now joblet
