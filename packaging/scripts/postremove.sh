#!/bin/sh
# joblet postrm (deb: "remove" | "purge" | "upgrade" | ...; rpm: $1 =
# instances after).
#
# Only a deb purge deletes /opt/joblet: this node's private keys, server
# and client configs and, in embedded mode, its CA. Remove and upgrade keep
# it (rpm has no purge: `rm -rf /opt/joblet` by hand). A JOBLET_HOME set
# elsewhere in /etc/default/joblet is never deleted.
set -e

if [ "$1" = purge ]; then
  if [ -d /opt/joblet ]; then
    echo "joblet: purge: deleting /opt/joblet (this node's certificates, private keys and configs)"
    rm -rf /opt/joblet
  fi
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
fi
exit 0
