package sandbox

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// Check names what this node lacks to run spec as asked, with the fix; nil
// when it can. It does not start anything: Probe does.
func Check(spec Spec) error {
	switch spec.Isolation {
	case None:
		return nil
	case Full, "":
	default:
		return fmt.Errorf("isolation %q: use %q or %q", spec.Isolation, Full, None)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("isolation full needs root (namespaces, cgroups, switching to the job user) and joblet runs as uid %d: run the server as root (the systemd unit does) or set jobs.isolation: none", os.Geteuid())
	}
	if spec.UID == 0 {
		return fmt.Errorf("the job user is uid 0: jobs never run as root; set jobs.user to an unprivileged user")
	}
	switch spec.Network {
	case NetNone, NetHost, "":
	default:
		return fmt.Errorf("network %q: use %q or %q", spec.Network, NetNone, NetHost)
	}
	ns := []string{"pid", "mnt", "uts", "ipc"}
	if spec.Network != NetHost {
		ns = append(ns, "net")
	}
	for _, n := range ns {
		if _, err := os.Stat("/proc/self/ns/" + n); err != nil {
			return fmt.Errorf("the kernel has no %s namespaces (%v): enable %s or set jobs.isolation: none", n, err, nsConfig[n])
		}
	}
	for _, h := range spec.Hide {
		if !filepath.IsAbs(h) || filepath.Clean(h) == "/" {
			return fmt.Errorf("hide path %q: must be an absolute path other than /", h)
		}
	}
	return checkCgroups()
}

// nsConfig is the kernel option behind each namespace type.
var nsConfig = map[string]string{"pid": "CONFIG_PID_NS", "mnt": "CONFIG_NAMESPACES", "uts": "CONFIG_UTS_NS", "ipc": "CONFIG_IPC_NS", "net": "CONFIG_NET_NS"}

// Probe runs `true` with spec's isolation, user, network and hidden paths
// in dir: the check that proves the kernel accepts everything Start asks of
// it (a namespace type can exist and still be refused).
func Probe(spec Spec) error {
	if err := Check(spec); err != nil {
		return err
	}
	spec.Path, spec.Args, spec.Env = "true", nil, nil
	var out bytes.Buffer
	p, err := Start(spec, &out, &out)
	if err != nil {
		return fmt.Errorf("probe job: %w", err)
	}
	if e := p.Wait(); e.Code != 0 {
		return fmt.Errorf("probe job `true` ended with %+v: %s", e, out.String())
	}
	return nil
}
