package sandbox

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	profiles "github.com/moby/profiles/seccomp"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The job's syscall filter is Docker's default seccomp profile, taken as
// data from github.com/moby/profiles/seccomp (the package dockerd itself
// uses) as it applies to a process with no capabilities on this
// architecture, and assembled into BPF by github.com/elastic/go-seccomp-bpf
// (pure Go: the server builds with CGO_ENABLED=0; go.mod replaces it with the
// patched copy in third_party/go-seccomp-bpf, see its README.patch: upstream
// compares an argument with later rules' syscall numbers after a failed
// argument check). So a job cannot create
// namespaces (user namespaces included: clone and unshare with CLONE_NEW*
// flags), mount, load kernel modules, use keyctl, bpf, perf_event_open,
// reboot, set the clock, and the rest Docker refuses; a refused call fails
// with EPERM. On top of Docker's profile, ptrace and process_vm_readv/writev
// are refused too: Docker allows a container to trace its own processes, a
// job may not trace anything. Syscalls of another ABI than the server's
// (i386 and x32 on amd64) are refused whole, as the library does.

// deniedOnTop are refused although Docker's profile allows them.
var deniedOnTop = []string{"ptrace", "process_vm_readv", "process_vm_writev"}

// jobFilter builds the filter; an error means the profile uses something
// the translation below does not know (a new operator): fail, never weaken.
func jobFilter() (seccomp.Filter, error) {
	spec := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}} // no capabilities
	prof, err := profiles.GetDefaultProfile(spec)
	if err != nil {
		return seccomp.Filter{}, fmt.Errorf("seccomp: Docker's default profile: %w", err)
	}
	info, err := arch.GetInfo("")
	if err != nil {
		return seccomp.Filter{}, fmt.Errorf("seccomp: %w", err)
	}
	deflt, err := action(prof.DefaultAction, prof.DefaultErrnoRet)
	if err != nil {
		return seccomp.Filter{}, err
	}
	policy := seccomp.Policy{DefaultAction: deflt}
	for _, rule := range prof.Syscalls {
		act, err := action(rule.Action, rule.ErrnoRet)
		if err != nil {
			return seccomp.Filter{}, err
		}
		g := seccomp.SyscallGroup{Action: act}
		for _, name := range rule.Names {
			// A name the library's table lacks (another arch's, or newer
			// than its table) stays at the default: refused.
			if _, known := info.SyscallNames[name]; !known || (act == seccomp.ActionAllow && slices.Contains(deniedOnTop, name)) {
				continue
			}
			if len(rule.Args) == 0 {
				g.Names = append(g.Names, name)
				continue
			}
			conds, err := conditions(rule.Args)
			if err != nil {
				return seccomp.Filter{}, fmt.Errorf("seccomp: %s: %w", name, err)
			}
			g.NamesWithCondtions = append(g.NamesWithCondtions, seccomp.NameWithConditions{Name: name, Conditions: conds})
		}
		if len(g.Names)+len(g.NamesWithCondtions) > 0 {
			policy.Syscalls = append(policy.Syscalls, g)
		}
	}
	return seccomp.Filter{NoNewPrivs: true, Flag: seccomp.FilterFlagTSync, Policy: policy}, nil
}

func action(a specs.LinuxSeccompAction, errno *uint) (seccomp.Action, error) {
	switch a {
	case specs.ActAllow:
		return seccomp.ActionAllow, nil
	case specs.ActErrno:
		if errno == nil || *errno == uint(unix.EPERM) {
			return seccomp.ActionErrno, nil // the library returns EPERM
		}
		// clone3 answers ENOSYS, so libc falls back to clone, whose flags
		// a filter can read.
		return seccomp.ActionErrno | seccomp.Action(*errno&0xffff), nil
	}
	return 0, fmt.Errorf("seccomp: action %s in Docker's profile is not translated", a)
}

// conditions translates one rule's argument checks (all must hold).
func conditions(args []specs.LinuxSeccompArg) (seccomp.ArgumentConditions, error) {
	ops := map[specs.LinuxSeccompOperator]seccomp.Operation{
		specs.OpEqualTo: seccomp.Equal, specs.OpNotEqual: seccomp.NotEqual,
		specs.OpLessThan: seccomp.LessThan, specs.OpLessEqual: seccomp.LessOrEqual,
		specs.OpGreaterThan: seccomp.GreaterThan, specs.OpGreaterEqual: seccomp.GreaterOrEqual,
	}
	var out seccomp.ArgumentConditions
	for _, a := range args {
		c := seccomp.Condition{Argument: uint32(a.Index), Value: a.Value}
		switch op, ok := ops[a.Op]; {
		case ok:
			c.Operation = op
		case a.Op == specs.OpMaskedEqual && a.ValueTwo == 0:
			c.Operation = seccomp.BitsNotSet // (arg & mask) == 0
		default:
			return nil, fmt.Errorf("operator %s (value %#x, %#x) is not translated", a.Op, a.Value, a.ValueTwo)
		}
		out = append(out, c)
	}
	return out, nil
}

// emptyBoundingSet drops every capability from the calling thread's
// bounding set (inherited by what it starts): nothing the job runs can
// regain a capability, whatever file capabilities it carries. Needs
// CAP_SETPCAP: call it before the setuid.
func emptyBoundingSet() error {
	last := unix.CAP_LAST_CAP
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			last = n
		}
	}
	for c := 0; c <= last; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("drop capability %d from the job's bounding set: %w (the server needs CAP_SETPCAP; packaging/joblet.service keeps it)", c, err)
		}
	}
	return nil
}
