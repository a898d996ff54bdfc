package harness

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// StartHAProxy runs HAProxy in TLS passthrough (mode tcp), the way an NLB
// fronts a joblet fleet: bind is HOST:PORT, backends are HOST:PORT.
func StartHAProxy(t testing.TB, bind string, backends []string) {
	t.Helper()
	StartHAProxyBalance(t, bind, backends, "roundrobin")
}

// StartHAProxyBalance is StartHAProxy with another balance algorithm:
// "hash src_port" picks the node by a hash of the connection's source
// port, as a flow-hash balancer (an NLB) does for one client.
func StartHAProxyBalance(t testing.TB, bind string, backends []string, balance string) {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatalf("haproxy is required for the load balancer tests and is not installed (apt-get install haproxy; scripts/test.sh does it): %v", err)
	}
	cfg := fmt.Sprintf(`global
  maxconn 512
defaults
  mode tcp
  timeout connect 2s
  timeout client 60s
  timeout server 60s
frontend joblet
  bind %s
  default_backend nodes
backend nodes
  balance %s
`, bind, balance)
	for i, b := range backends {
		cfg += fmt.Sprintf("  server node%d %s check inter 500ms\n", i+1, b)
	}
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
	Start(t, Env(), bin, "-db", "-f", path)
	Eventually(t, 10*time.Second, "haproxy listening on "+bind, func() error {
		c, err := net.DialTimeout("tcp", bind, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
}
