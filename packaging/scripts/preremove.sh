#!/bin/sh
# joblet prerm (deb: "remove" | "upgrade" | ...; rpm: $1 = instances after,
# 0 on erase, 1 on upgrade).
#
# On removal, stop and disable the service: its binary and unit are going
# away. On an upgrade, leave it running: the jobs live in its memory (the
# postinst says how to restart when convenient). $JOBLET_HOME is never
# touched here.
set -e

case "$1" in
  remove|0) ;;
  *) exit 0 ;;
esac
if [ -d /run/systemd/system ]; then
  systemctl disable --now joblet.service || true
fi
exit 0
