//go:build bench

package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/test/harness"
)

// restRefreshes is how many refreshes at rest restSection counts.
const restRefreshes = 10

// restCalls measures what a running node's refresh at rest costs: a node
// on Secrets Manager (moto, through the recording proxy) with the default
// refresh interval, past its first refresh, refreshed restRefreshes times
// by SIGHUP (the same refresh as the periodic one, at once), and left
// alone for as long again. Calls per refresh, and calls while idle.
func restCalls(t *testing.T) (perRefresh map[string]float64, idle int, interval time.Duration) {
	joblet, _ := harness.Bins(t)
	moto.Reset(t)
	proxy := harness.StartAWSProxy(t, moto.URL)
	home := t.TempDir()
	port := harness.FreePort(t)
	env := smEnv(proxy.URL, home, fmt.Sprintf("JOBLET_SERVER_PORT=%d", port))
	timed(t, env, joblet, "certs", "bootstrap")
	cfgPath := filepath.Join(home, "config", "joblet-config.yml")
	sc, err := config.LoadServer(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if interval, _, err = sc.Durations(); err != nil {
		t.Fatal(err)
	}
	p := harness.Start(t, env, joblet, "server", "--config", cfgPath)
	harness.Eventually(t, 20*time.Second, "the node's start line names its refresh interval", func() error {
		if !strings.Contains(p.Output(), "refreshInterval="+interval.String()) {
			return fmt.Errorf("no refreshInterval=%s in:\n%s", interval, p.Output())
		}
		return nil
	})
	// Its first refresh (at start) reads in full; wait until it is done.
	settle := func() {
		last := -1
		for n := len(proxy.Calls()); n != last; n = len(proxy.Calls()) {
			last = n
			time.Sleep(500 * time.Millisecond)
		}
	}
	time.Sleep(time.Second)
	settle()
	proxy.Calls()
	start := time.Now()
	for i := 0; i < restRefreshes; i++ {
		p.Cmd.Process.Signal(syscall.SIGHUP)
		time.Sleep(700 * time.Millisecond)
	}
	time.Sleep(time.Second)
	counted := harness.Count(proxy.Calls())
	time.Sleep(time.Since(start))
	idle = len(proxy.Calls())
	perRefresh = map[string]float64{}
	for k, v := range counted {
		perRefresh[k] = float64(v) / restRefreshes
	}
	p.Cmd.Process.Signal(os.Interrupt)
	return perRefresh, idle, interval
}

// restSection writes what a fleet at rest costs at the default interval,
// from restCalls.
func restSection(t *testing.T, md *strings.Builder) {
	per, idle, interval := restCalls(t)
	total := 0.0
	var parts []string
	for _, k := range sortedKeys(per) {
		total += per[k]
		parts = append(parts, fmt.Sprintf("%s %.1f", k, per[k]))
	}
	month := 30 * 24 * time.Hour
	refreshes := float64(month) / float64(interval) // the jitter is symmetric: the mean wait is the interval
	fmt.Fprintf(md, "## A fleet at rest\n\nOne node on Secrets Manager (moto, through the recording proxy) with the default `security.refreshInterval` (%s, ±10%%), past its first refresh: %d refreshes at rest (SIGHUP: the periodic refresh, at once) made %.1f calls each (%s), and nothing else: %d calls while it sat idle for as long again. Secrets Manager bills $0.05 per 10,000 calls; a month is 30 days, %.0f refreshes per node.\n\n",
		interval, restRefreshes, total, strings.Join(parts, ", "), idle, refreshes)
	fmt.Fprintf(md, "| nodes | calls a month | cost a month |\n|---|---|---|\n")
	for _, n := range []float64{1000, 10000, 100000} {
		calls := n * refreshes * total
		fmt.Fprintf(md, "| %s | %s | $%.2f |\n", thousands(n), millions(calls), calls*0.05/10000)
	}
	fmt.Fprintf(md, "\nA change does not wait for the interval: `certs revoke` and `reissue --revoke` push the CRL to the nodes they are given, rnx carries a newer CRL to the nodes it calls, and SIGHUP refreshes a node at once; the interval bounds only a node none of these reached.\n\n")
}

func sortedKeys(m map[string]float64) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func thousands(n float64) string {
	s := fmt.Sprintf("%.0f", n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func millions(n float64) string {
	if n >= 1e6 {
		return fmt.Sprintf("%.2f million", n/1e6)
	}
	return thousands(n)
}
