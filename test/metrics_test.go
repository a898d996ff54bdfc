package test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/test/harness"
)

// scrape returns the samples of a Prometheus text page, keyed by the series
// as printed (name{labels sorted}).
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

func TestMetricsAndHealth(t *testing.T) {
	joblet, rnx := harness.Bins(t)
	home, _, env := smNode(t, harness.ClosedURL, "USE_SECRETS_MANAGER=false")
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	harness.MustRun(t, env, joblet, "certs", "bootstrap", "--metrics-address", metricsAddr)
	harness.Start(t, env, joblet, "server", "--config", filepath.Join(home, "config", "joblet-config.yml"))
	cfg := harness.Env("RNX_CONFIG=" + filepath.Join(home, "config", "rnx-config.yml"))
	harness.Eventually(t, 10*time.Second, "node up", func() error {
		if r := harness.Run(t, cfg, rnx, "info"); r.Code != 0 {
			return errors.New(r.String())
		}
		return nil
	})
	harness.MustRun(t, cfg, rnx, "job", "run", "--follow", "true")
	harness.Run(t, cfg, rnx, "--node", "reader", "job", "run", "true") // denied
	// Handshakes the node refuses: a client certificate from another fleet
	// (trusting this node's CA), and a client of that fleet that refuses
	// this node's certificate.
	otherHome, _ := embeddedHome(t)
	mine, err := config.LoadRnx(filepath.Join(home, "config", "rnx-config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := config.LoadRnx(filepath.Join(otherHome, "config", "rnx-config.yml"))
	for name, n := range mine.Nodes {
		n.Cert, n.Key = other.Nodes[name].Cert, other.Nodes[name].Key
	}
	foreignCert := writeRnx(t, mine)
	for name, n := range other.Nodes {
		n.Address = mine.Nodes[name].Address
	}
	foreignFleet := writeRnx(t, other)
	harness.Run(t, harness.Env(), rnx, "--config", foreignCert, "info")
	harness.Run(t, harness.Env(), rnx, "--config", foreignFleet, "info")

	m := scrape(t, "http://"+metricsAddr+"/metrics")
	leaf, _ := pki.ParseLeaf([]byte(serverConfig(t, home).Security.ServerCert))
	want := time.Until(leaf.NotAfter).Seconds()
	if got := m["joblet_server_certificate_expiry_seconds"]; math.Abs(got-want) > 60 {
		t.Errorf("expiry gauge %.0f, the certificate says %.0f", got, want)
	}
	checks := map[string]float64{
		`joblet_rpcs_total{code="OK",method="GetNodeInfo",role="admin"}`:                   1,
		`joblet_rpcs_total{code="PermissionDenied",method="RunJob",role="reader"}`:         1,
		`joblet_jobs{state="COMPLETED"}`:                                                   1,
		`joblet_tls_handshake_failures_total{reason="client_rejected_server_certificate"}`: 1,
	}
	// A client of another fleet: its CA differs in name from this node's, so
	// a Go client, told which CAs the node accepts, sends no certificate.
	if m[`joblet_tls_handshake_failures_total{reason="unknown_ca"}`]+m[`joblet_tls_handshake_failures_total{reason="no_client_certificate"}`] < 1 {
		t.Errorf("the foreign client's refusal was not counted: %v", m)
	}
	for series, min := range checks {
		if m[series] < min {
			t.Errorf("%s = %v, want >= %v", series, m[series], min)
		}
	}
	found := false
	for k, v := range m {
		if strings.HasPrefix(k, "joblet_trusted_ca_expiry_seconds{") && v > 365*24*3600 {
			found = true
		}
	}
	if !found {
		t.Errorf("no trusted CA expiry gauge")
	}
	resp, err := http.Get("http://" + metricsAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Fatalf("healthz: %d %q", resp.StatusCode, body)
	}
}

func writeRnx(t *testing.T, c *config.Rnx) string {
	t.Helper()
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "rnx.yml")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
