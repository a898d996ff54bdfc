package sandbox

import "os/exec"

// UnguardHostNetwork removes the nftables rules GuardHostNetwork installed
// (a node keeps them; tests clean up).
func UnguardHostNetwork() error {
	return exec.Command("nft", "delete", "table", "inet", nftTable).Run()
}
