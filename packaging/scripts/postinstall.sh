#!/bin/sh
# joblet postinst (deb: "configure" [old-version]; rpm: $1 = instances after).
#
# Makes systemd see the new or changed unit, and does nothing else. It does
# not bootstrap: where the CA lives (Secrets Manager, KMS, a shared
# directory, embedded), the prefix, region and addresses are site decisions,
# and guessing them at `apt install` time could create a fleet CA in Secrets
# Manager, or a private CA nobody asked for. It does not start, enable or
# restart the service either: without a bootstrapped config it cannot
# serve, and on an upgrade a restart would kill the running jobs (they live
# in the process's memory), so the operator picks the moment.
set -e

# The unprivileged user jobs run as by default (jobs.user). Created here,
# where writing /etc/passwd is expected: the service itself cannot
# (ProtectSystem=strict makes /etc read-only for it). Kept on purge, as
# system users are, so that files a job left keep a known owner. The same
# line as the sandbox's when it creates the user (internal/sandbox/user.go).
if ! getent passwd joblet-job >/dev/null; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin joblet-job
fi

if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
  if systemctl is-active --quiet joblet.service; then
    echo "joblet: the running service still runs the previous binary; 'systemctl restart joblet' when its jobs may be stopped"
  fi
fi
if [ ! -f /opt/joblet/config/joblet-config.yml ]; then
  echo "joblet: not configured yet: put the node's settings in /etc/default/joblet, run 'joblet certs bootstrap --settings /etc/default/joblet' (the service reads the same file), then 'systemctl enable --now joblet'; see /usr/share/doc/joblet/INSTALL.md"
fi
exit 0
