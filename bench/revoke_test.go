//go:build bench

package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/client"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/test/harness"
)

// revokeFleets are the fleet sizes revokeSection measures.
var revokeFleets = []int{3, 30}

// revokeRoles are the roles revoked in turn (one run each): the admin
// stays, for the operator's command.
var revokeRoles = []pki.Role{pki.Reader, pki.Developer, pki.Maintainer}

// revokeRuns measures, for a fleet of n nodes that refresh hourly (so only
// the push can reach them in time), how long from the start of
// `joblet certs revoke --nodes ...` until every node refuses a call of the
// revoked certificate, on a connection opened before the revoke (a node
// re-checks every call): one run per role of revokeRoles.
func revokeRuns(t *testing.T, n int) (cmd, last []time.Duration) {
	joblet, _ := harness.Bins(t)
	moto.Reset(t)
	var homes, list []string
	var addrs []string
	var procs []*harness.Proc
	for i := 1; i <= n; i++ {
		home := t.TempDir()
		port := harness.FreePort(t)
		env := smEnv(moto.URL, home, fmt.Sprintf("JOBLET_SERVER_PORT=%d", port), fmt.Sprintf("JOBLET_NODE_ID=node-%d", i))
		timed(t, env, joblet, "certs", "bootstrap", "--refresh-interval", "1h")
		procs = append(procs, harness.Start(t, env, joblet, "server", "--config", filepath.Join(home, "config", "joblet-config.yml")))
		homes = append(homes, home)
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", port))
		list = append(list, fmt.Sprintf("node-%d=127.0.0.1:%d", i, port))
	}
	defer func() {
		for _, p := range procs {
			p.Cmd.Process.Signal(os.Interrupt)
		}
	}()
	opEnv := smEnv(moto.URL, homes[0], "JOBLET_NODES="+strings.Join(list, ","))
	for _, role := range revokeRoles {
		rc, err := config.LoadRnx(filepath.Join(homes[0], "config", "rnx-config-"+string(role)+".yml"))
		if err != nil {
			t.Fatal(err)
		}
		_, entry, err := rc.Select("")
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := pki.ParseLeaf([]byte(entry.Cert))
		if err != nil {
			t.Fatal(err)
		}
		// One connection per node, open and serving before the revoke.
		conns := make([]*client.Conn, n)
		for i, a := range addrs {
			e := *entry
			e.Address = a
			harness.Eventually(t, 30*time.Second, "node "+a+" serving the "+string(role), func() error {
				c, err := client.Dial(string(role), &e)
				if err != nil {
					return err
				}
				if _, err := c.Info(context.Background()); err != nil {
					c.Close()
					return err
				}
				conns[i] = c
				return nil
			})
		}
		refused := make([]time.Duration, n)
		var wg sync.WaitGroup
		start := time.Now()
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				for time.Since(start) < 60*time.Second {
					if _, err := c.Info(context.Background()); err != nil && strings.Contains(err.Error(), "revoked") {
						refused[i] = time.Since(start)
						return
					}
					time.Sleep(20 * time.Millisecond) // polls of 30 nodes stay a small load
				}
				t.Errorf("node %s still served the revoked %s certificate 60 s after the revoke", addrs[i], role)
			}()
		}
		took := timed(t, opEnv, joblet, "certs", "revoke", "--serial", pki.SerialHex(leaf.SerialNumber), "--reason", "keyCompromise")
		wg.Wait()
		cmd = append(cmd, took.wall)
		last = append(last, slices.Max(refused))
	}
	return cmd, last
}

// revokeSection writes how fast a revocation reaches a fleet by push.
func revokeSection(t *testing.T, md *strings.Builder) {
	fmt.Fprintf(md, "## Revocation by push\n\nNodes on Secrets Manager (moto) that refresh hourly, so only the push reaches them in time. Each run: a connection to every node, serving a role's certificate; then `joblet certs revoke --serial ...` with the nodes in `JOBLET_NODES` (it writes the CRL and the trust state naming it, then offers both to every node); the time until the last node refuses that certificate on the connection it already had (nodes re-check every call), measured from the start of the command. %d runs per fleet (revoking %s in turn); median and worst.\n\n", len(revokeRoles), joinRoles(revokeRoles))
	fmt.Fprintf(md, "| nodes | revoke command (median) | last node refusing (median) | worst |\n|---|---|---|---|\n")
	for _, n := range revokeFleets {
		cmd, last := revokeRuns(t, n)
		fmt.Fprintf(md, "| %d | %s | %s | %s |\n", n, ms(middle(cmd)), ms(middle(last)), ms(slices.Max(last)))
	}
	fmt.Fprintf(md, "\nThe nodes' hourly refresh would have taken up to an hour; the push is one `OfferCRL` call per node, 16 at a time.\n\n")
}

func joinRoles(rs []pki.Role) string {
	var s []string
	for _, r := range rs {
		s = append(s, string(r))
	}
	return strings.Join(s, ", ")
}

// middle is the median of ds.
func middle(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
