package test

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/test/harness"
)

// dropper forwards TCP connections to a node, except that it closes the
// first drop connections at once (a node that died behind a balancer).
type dropper struct {
	addr       string
	seen, drop atomic.Int64
}

func startDropper(t *testing.T, target string) *dropper {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	d := &dropper{addr: l.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if d.seen.Add(1) <= d.drop.Load() {
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				up, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				go io.Copy(up, c)
				io.Copy(c, up)
			}()
		}
	}()
	return d
}

// rnx makes a read again on a new connection when its connection broke,
// and never a job start: a start whose answer was lost may have run.
func TestRnxRetriesReadsNotJobStarts(t *testing.T) {
	joblet, rnx := harness.Bins(t)
	home, port, env := smNode(t, harness.ClosedURL, "USE_SECRETS_MANAGER=false")
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	harness.Start(t, env, joblet, "server", "--config", filepath.Join(home, "config", "joblet-config.yml"))
	direct := filepath.Join(home, "config", "rnx-config.yml")
	harness.Eventually(t, 10*time.Second, "node serving", func() error {
		if r := harness.Run(t, harness.Env(), rnx, "--config", direct, "info"); r.Code != 0 {
			return errors.New(r.String())
		}
		return nil
	})
	d := startDropper(t, "127.0.0.1:"+itoa(port))
	b, _ := os.ReadFile(direct)
	// The certificate names 127.0.0.1; only the port changes.
	cfg := filepath.Join(t.TempDir(), "via-dropper.yml")
	os.WriteFile(cfg, []byte(strings.ReplaceAll(string(b), "127.0.0.1:"+itoa(port), d.addr)), 0o600)

	// Two broken connections, then the node: info is served.
	d.drop.Store(2)
	if r := harness.Run(t, harness.Env(), rnx, "--config", cfg, "info"); r.Code != 0 || !strings.Contains(r.Stdout, "node id:") {
		t.Fatalf("info after two broken connections: %s", r)
	}
	if n := d.seen.Load(); n < 3 {
		t.Fatalf("info made %d connections: want a new one after each broken one", n)
	}

	// A job start on a broken connection fails and is not made again: no
	// job runs, and at most one more connection (the explanation's probe)
	// is opened.
	d.seen.Store(0)
	d.drop.Store(1 << 30)
	r := harness.Run(t, harness.Env(), rnx, "--config", cfg, "job", "run", "--", "sh", "-c", "echo once")
	if r.Code != 1 {
		t.Fatalf("job run on a broken connection: %s", r)
	}
	if n := d.seen.Load(); n > 2 {
		t.Fatalf("job run made %d connections: a start must not be retried", n)
	}
	if out := harness.MustRun(t, harness.Env(), rnx, "--config", direct, "job", "list").Stdout; strings.Contains(out, "echo once") {
		t.Fatalf("a failed start left a job:\n%s", out)
	}
}
