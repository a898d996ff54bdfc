package sandbox

import (
	"encoding/binary"
	"testing"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// These tests run the assembled filter in golang.org/x/net/bpf's VM, no
// kernel needed, against decide, a direct reading of the policy: they guard
// the patch in third_party/go-seccomp-bpf (after a failed argument check
// the syscall number is reloaded, so no argument is compared with the
// syscall numbers of later rules).

// vmRun returns the filter's answer for syscall nr with args.
func vmRun(t *testing.T, vm *bpf.VM, info *arch.Info, nr uint32, args [6]uint64) uint32 {
	t.Helper()
	// The VM loads words big-endian; seccomp_data is native-endian, so
	// place each 32-bit word where the filter loads it and store it BE.
	words := make([]uint32, 16)
	words[0], words[1] = nr, uint32(info.ID)
	le := binary.NativeEndian.Uint16([]byte{1, 0}) == 1
	for i, a := range args {
		lo, hi := 4+2*i, 5+2*i
		if !le {
			lo, hi = hi, lo
		}
		words[lo], words[hi] = uint32(a), uint32(a>>32)
	}
	in := make([]byte, 64)
	for i, w := range words {
		binary.BigEndian.PutUint32(in[4*i:], w)
	}
	out, err := vm.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(out)
}

// decide is what the policy says for the call, comparing 64-bit argument
// values as libseccomp does for Docker.
func decide(p seccomp.Policy, info *arch.Info, nr uint32, args [6]uint64) uint32 {
	ret := func(a seccomp.Action) uint32 {
		if a == seccomp.ActionErrno {
			return uint32(a) | uint32(unix.EPERM)
		}
		return uint32(a)
	}
	for _, g := range p.Syscalls {
		for _, n := range g.Names {
			if uint32(info.SyscallNames[n]) == nr {
				return ret(g.Action)
			}
		}
		for _, nc := range g.NamesWithCondtions {
			if uint32(info.SyscallNames[nc.Name]) == nr && holds(nc.Conditions, args) {
				return ret(g.Action)
			}
		}
	}
	return ret(p.DefaultAction)
}

func holds(conds seccomp.ArgumentConditions, args [6]uint64) bool {
	for _, c := range conds {
		a, v := args[c.Argument], c.Value
		ok := map[seccomp.Operation]bool{
			seccomp.Equal: a == v, seccomp.NotEqual: a != v,
			seccomp.GreaterThan: a > v, seccomp.GreaterOrEqual: a >= v,
			seccomp.LessThan: a < v, seccomp.LessOrEqual: a <= v,
			seccomp.BitsSet: a&v != 0, seccomp.BitsNotSet: a&v == 0,
		}[c.Operation]
		if !ok {
			return false
		}
	}
	return true
}

func newVM(t *testing.T, p seccomp.Policy) *bpf.VM {
	t.Helper()
	prog, err := p.Assemble()
	if err != nil {
		t.Fatal(err)
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

func archInfo(t *testing.T) *arch.Info {
	t.Helper()
	info, err := arch.GetInfo("")
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// A failed argument check followed by other rules: an argument whose upper
// half is the number of a syscall allowed later must not reach its ALLOW,
// at a group's end and between two syscalls of one group.
func TestFilterReloadsSyscallNumberAfterArgumentCheck(t *testing.T) {
	info := archInfo(t)
	nr := func(n string) uint32 { return uint32(info.SyscallNames[n]) }
	p := seccomp.Policy{DefaultAction: seccomp.ActionErrno, Syscalls: []seccomp.SyscallGroup{
		{Action: seccomp.ActionAllow, NamesWithCondtions: []seccomp.NameWithConditions{
			{Name: "socket", Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.Equal, Value: unix.AF_INET}}},
			{Name: "personality", Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.Equal, Value: 8}}},
			{Name: "kill", Conditions: seccomp.ArgumentConditions{{Argument: 1, Operation: seccomp.Equal, Value: 0}}},
		}},
		{Action: seccomp.ActionAllow, Names: []string{"getpid"}},
	}}
	prog, err := p.Assemble()
	if err != nil {
		t.Fatal(err)
	}
	reloads := 0
	for _, in := range prog {
		if ld, ok := in.(bpf.LoadAbsolute); ok && ld.Off == 0 {
			reloads++
		}
	}
	// The first load, after each of the group's first two syscalls, at
	// the group's end.
	if reloads != 4 {
		t.Errorf("want the syscall number loaded 4 times, got %d:\n%v", reloads, prog)
	}
	vm := newVM(t, p)
	allow, eperm := uint32(seccomp.ActionAllow), uint32(seccomp.ActionErrno)|uint32(unix.EPERM)
	for _, c := range []struct {
		name string
		nr   uint32
		args [6]uint64
		want uint32
	}{
		{"socket(AF_INET)", nr("socket"), [6]uint64{unix.AF_INET}, allow},
		{"socket(AF_INET6)", nr("socket"), [6]uint64{unix.AF_INET6}, eperm},
		{"socket(AF_INET6 | getpid<<32)", nr("socket"), [6]uint64{unix.AF_INET6 | uint64(nr("getpid"))<<32}, eperm},
		{"socket(getpid | getpid<<32)", nr("socket"), [6]uint64{uint64(nr("getpid")) | uint64(nr("getpid"))<<32}, eperm},
		{"socket(personality<<32 | 8)", nr("socket"), [6]uint64{uint64(nr("personality"))<<32 | 8}, eperm},
		{"socket(kill<<32)", nr("socket"), [6]uint64{uint64(nr("kill")) << 32}, eperm},
		{"personality(8)", nr("personality"), [6]uint64{8}, allow},
		{"personality(getpid<<32 | 8)", nr("personality"), [6]uint64{uint64(nr("getpid"))<<32 | 8}, eperm},
		{"kill(1, getpid<<32)", nr("kill"), [6]uint64{1, uint64(nr("getpid")) << 32}, eperm},
		{"getpid", nr("getpid"), [6]uint64{}, allow},
	} {
		if got, ref := vmRun(t, vm, info, c.nr, c.args), decide(p, info, c.nr, c.args); got != c.want || ref != c.want {
			t.Errorf("%s: filter answers %#x, the policy %#x, want %#x", c.name, got, ref, c.want)
		}
	}
}

// The job's filter gives, for every syscall and for each conditional
// rule's allowed values, their neighbours and their variants with any
// syscall number (or all ones) in the upper 32 bits, the answer Docker's
// profile gives; and the calls jobs need (IPv6, netlink route, the
// personality query) are allowed while the high-word tricks are refused.
func TestJobFilterDecisions(t *testing.T) {
	f, err := jobFilter()
	if err != nil {
		t.Fatal(err)
	}
	info := archInfo(t)
	vm := newVM(t, f.Policy)
	check := func(nr uint32, args [6]uint64) uint32 {
		t.Helper()
		got, want := vmRun(t, vm, info, nr, args), decide(f.Policy, info, nr, args)
		if got != want {
			t.Errorf("syscall %d%v: filter answers %#x, Docker's profile %#x", nr, args, got, want)
		}
		return got
	}
	hiWords := []uint32{0xffffffff, 1}
	for _, n := range info.SyscallNames {
		check(uint32(n), [6]uint64{})
		hiWords = append(hiWords, uint32(n))
	}
	rules := 0
	for _, g := range f.Policy.Syscalls {
		for _, nc := range g.NamesWithCondtions {
			rules++
			nr := uint32(info.SyscallNames[nc.Name])
			var base [6]uint64
			for _, c := range nc.Conditions {
				base[c.Argument] = c.Value
			}
			if g.Action == seccomp.ActionAllow && check(nr, base) != uint32(seccomp.ActionAllow) && allEqual(nc.Conditions) {
				t.Errorf("%s%v: its own allowed values are refused", nc.Name, base)
			}
			for _, c := range nc.Conditions {
				for _, v := range []uint64{c.Value, c.Value + 1, c.Value - 1, 0, 0xffffffff} {
					for _, hi := range hiWords {
						args := base
						args[c.Argument] = uint64(hi)<<32 | v&0xffffffff
						check(nr, args)
					}
				}
			}
		}
	}
	if rules < 10 {
		t.Fatalf("only %d conditional rules in the job's filter: Docker's profile changed shape", rules)
	}

	allow, eperm := uint32(seccomp.ActionAllow), uint32(seccomp.ActionErrno)|uint32(unix.EPERM)
	nr := func(n string) uint32 { return uint32(info.SyscallNames[n]) }
	for _, c := range []struct {
		name string
		nr   uint32
		args [6]uint64
		want uint32
	}{
		{"socket(AF_INET6, SOCK_STREAM)", nr("socket"), [6]uint64{unix.AF_INET6, unix.SOCK_STREAM}, allow},
		{"socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)", nr("socket"), [6]uint64{unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE}, allow},
		{"personality(0x20008)", nr("personality"), [6]uint64{0x20008}, allow},
		{"personality(0xffffffff)", nr("personality"), [6]uint64{0xffffffff}, allow},
		{"socket(AF_VSOCK)", nr("socket"), [6]uint64{unix.AF_VSOCK, unix.SOCK_STREAM}, eperm},
		{"clone(SIGCHLD)", nr("clone"), [6]uint64{uint64(unix.SIGCHLD)}, allow},
	} {
		if got := check(c.nr, c.args); got != c.want {
			t.Errorf("%s: filter answers %#x, want %#x", c.name, got, c.want)
		}
	}
	for _, hi := range []uint64{158, 154, 56, 1, 0xffffffff} {
		for _, c := range []struct {
			name string
			nr   uint32
			args [6]uint64
		}{
			{"socket(AF_VSOCK)", nr("socket"), [6]uint64{unix.AF_VSOCK | hi<<32, unix.SOCK_STREAM}},
			{"socket(AF_NETLINK, NETLINK_AUDIT)", nr("socket"), [6]uint64{unix.AF_NETLINK | hi<<32, unix.SOCK_RAW, unix.NETLINK_AUDIT}},
			{"personality(READ_IMPLIES_EXEC)", nr("personality"), [6]uint64{readImpliesExec | hi<<32}},
			{"clone(CLONE_NEWUSER)", nr("clone"), [6]uint64{unix.CLONE_NEWUSER | uint64(unix.SIGCHLD) | hi<<32}},
		} {
			if got := check(c.nr, c.args); got != eperm {
				t.Errorf("%s with %#x in the upper half: filter answers %#x, want EPERM", c.name, hi, got)
			}
		}
	}
}

// readImpliesExec is personality(2)'s READ_IMPLIES_EXEC (not in x/sys/unix).
const readImpliesExec = 0x0400000

func allEqual(conds seccomp.ArgumentConditions) bool {
	for _, c := range conds {
		if c.Operation != seccomp.Equal {
			return false
		}
	}
	return true
}
