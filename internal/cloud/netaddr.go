// Package cloud detects where a node runs: its primary address and, on EC2,
// its instance identity and region.
package cloud

import "net"

// PrimaryIP returns the first global unicast IPv4 address of an up,
// non-loopback interface (then IPv6), or "" when there is none. It reads
// interfaces only and sends no traffic.
func PrimaryIP() string {
	ifaces, err := net.Interfaces()
	if err != nil {
		return ""
	}
	var v6 string
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || !ipn.IP.IsGlobalUnicast() {
				continue
			}
			if v4 := ipn.IP.To4(); v4 != nil {
				return v4.String()
			}
			if v6 == "" {
				v6 = ipn.IP.String()
			}
		}
	}
	return v6
}
