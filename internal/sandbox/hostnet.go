package sandbox

import (
	"fmt"
	"os/exec"
	"strings"
)

// MetadataAddrs are the cloud instance metadata endpoints (EC2's IPv4 and
// IPv6): with network host, a job that reached them could take the
// instance role's credentials.
var MetadataAddrs = []string{"169.254.169.254", "fd00:ec2::254"}

// nftTable holds joblet's rules; replaced whole on every call.
const nftTable = "joblet_jobs"

// GuardHostNetwork refuses connections from uid to addrs on this node
// (for jobs sharing the host's network namespace) with an nftables owner
// match, or iptables where nft is missing. It fails, naming the fix, when
// neither can install the rules: the caller must then refuse such jobs.
func GuardHostNetwork(uid int, addrs []string) error {
	var v4, v6 []string
	for _, a := range addrs {
		if strings.Contains(a, ":") {
			v6 = append(v6, a)
		} else {
			v4 = append(v4, a)
		}
	}
	if _, err := exec.LookPath("nft"); err == nil {
		var rules strings.Builder
		fmt.Fprintf(&rules, "table inet %[1]s {}\ndelete table inet %[1]s\ntable inet %[1]s {\n chain output {\n  type filter hook output priority 0; policy accept;\n", nftTable)
		if len(v4) > 0 {
			fmt.Fprintf(&rules, "  meta skuid %d ip daddr { %s } reject\n", uid, strings.Join(v4, ", "))
		}
		if len(v6) > 0 {
			fmt.Fprintf(&rules, "  meta skuid %d ip6 daddr { %s } reject\n", uid, strings.Join(v6, ", "))
		}
		rules.WriteString(" }\n}\n")
		cmd := exec.Command("nft", "-f", "-")
		cmd.Stdin = strings.NewReader(rules.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("jobs.network host: nft could not install the rule refusing %s to uid %d: %v: %s", strings.Join(addrs, ", "), uid, err, out)
		}
		return nil
	}
	for _, fam := range []struct {
		bin   string
		addrs []string
	}{{"iptables", v4}, {"ip6tables", v6}} {
		for _, a := range fam.addrs {
			rule := []string{"OUTPUT", "-m", "owner", "--uid-owner", fmt.Sprint(uid), "-d", a, "-j", "REJECT"}
			if exec.Command(fam.bin, append([]string{"-C"}, rule...)...).Run() == nil {
				continue // already there
			}
			if out, err := exec.Command(fam.bin, append([]string{"-A"}, rule...)...).CombinedOutput(); err != nil {
				return fmt.Errorf("jobs.network host needs nftables or iptables to refuse the metadata endpoint %s to the job user (uid %d): %s: %v %s: install the nftables package, or use jobs.network: none", a, uid, fam.bin, err, out)
			}
		}
	}
	return nil
}
