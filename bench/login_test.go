//go:build bench

package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/ehsaniara/joblet/internal/awsident"
	"github.com/ehsaniara/joblet/internal/issuer"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/testutil/awspeople"
	"github.com/ehsaniara/joblet/test/harness"
)

// loginSection: `rnx login` against its floor, and the issuer's
// throughput (issue 26). The people sign against a second moto that checks
// signatures; the fleet's store is the bench's moto.
func loginSection(t *testing.T, md *strings.Builder) {
	joblet, rnx := harness.Bins(t)
	pm, err := harness.StartMoto("INITIAL_NO_AUTH_ACTION_COUNT=" + strconv.Itoa(awspeople.SetupCalls))
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Stop()
	people := awspeople.Make(t, pm.URL)
	dir := t.TempDir()
	env := smEnv(moto.URL, dir, "SECRETS_PREFIX=login")
	harness.MustRun(t, env, joblet, "certs", "init", "--address", "127.0.0.1:1", "--out", filepath.Join(dir, "operator"))
	policy := filepath.Join(dir, "policy.json")
	os.WriteFile(policy, []byte(`{"rules":[{"user":"arn:aws:iam::123456789012:user/alice","grant":"developer"}]}`), 0o600)
	harness.MustRun(t, env, joblet, "certs", "identity-policy", "sign", "--file", policy)
	harness.MustRun(t, env, joblet, "certs", "user-ca")
	tlsKey, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	tlsCA, _ := pki.NewCA(tlsKey, time.Now(), time.Hour)
	leafKey, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	leaf, err := (&pki.CA{Cert: tlsCA, Key: tlsKey}).IssueServer(leafKey.Public(), pki.SANs{IPs: []net.IP{net.ParseIP("127.0.0.1")}}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := pki.EncodeKey(leafKey)
	os.WriteFile(filepath.Join(dir, "tls.pem"), pki.EncodeCert(leaf.Cert), 0o600)
	os.WriteFile(filepath.Join(dir, "tls.key"), kp, 0o600)
	os.WriteFile(filepath.Join(dir, "issuer-ca.pem"), pki.EncodeCert(tlsCA), 0o600)
	port := harness.FreePort(t)
	url := fmt.Sprintf("https://127.0.0.1:%d", port)
	harness.Start(t, append(env, "AWS_ENDPOINT_URL_STS="+pm.URL), joblet, "issuer", "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--tls-cert", filepath.Join(dir, "tls.pem"), "--tls-key", filepath.Join(dir, "tls.key"))
	harness.Eventually(t, 20*time.Second, "the issuer", func() error {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err
	})
	cfg := filepath.Join(dir, "alice", "rnx-config.yml")
	harness.MustRun(t, harness.Env(), rnx, "--config", cfg, "config", "init", "--issuer", url, "--issuer-ca", filepath.Join(dir, "issuer-ca.pem"), "--address", "127.0.0.1:1")
	alice := harness.Env(awspeople.Env(people.Alice)...)

	pool := x509.NewCertPool()
	pool.AddCert(tlsCA)
	fresh := func() *http.Client { // a new connection per request, as each rnx process makes
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
	}
	get := func() time.Duration {
		start := time.Now()
		resp, err := fresh().Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return time.Since(start)
	}
	stsc := sts.NewFromConfig(people.Alice)
	stsCall := func() time.Duration {
		start := time.Now()
		if _, err := stsc.GetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{}); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	var logins, versions, rts, stss []time.Duration
	timed(t, alice, rnx, "--config", cfg, "login") // warm-up
	for i := 0; i < 20; i++ {
		logins = append(logins, timed(t, alice, rnx, "--config", cfg, "login").wall)
		versions = append(versions, timed(t, alice, rnx, "version").wall)
		rts = append(rts, get())
		stss = append(stss, stsCall())
	}
	floor := pct(versions, 0.5) + 2*pct(rts, 0.5)
	fmt.Fprintf(md, "## `rnx login` against its floor\n\n20 runs of each, interleaved: `rnx login` as an IAM user (a fresh ECDSA key, a signed STS proof, the issuer's GET and POST over new TLS connections; the issuer calls STS, a second moto that checks signatures). The floor is process start-up (`rnx version`) plus two fresh HTTPS round trips to the issuer; the issuer's STS call is shown beside it.\n\n")
	fmt.Fprintf(md, "| what | median | p95 |\n|---|---|---|\n| `rnx login` | %s | %s |\n| floor: start-up + 2 round trips | %s | |\n| start-up (`rnx version`) | %s | %s |\n| one HTTPS round trip to the issuer (new connection) | %s | %s |\n| the issuer's STS call (GetCallerIdentity to moto) | %s | %s |\n| **`rnx login` x floor** | **%.2f** | |\n\n",
		ms(pct(logins, 0.5)), ms(pct(logins, 0.95)), ms(floor), ms(pct(versions, 0.5)), ms(pct(versions, 0.95)), ms(pct(rts, 0.5)), ms(pct(rts, 0.95)),
		ms(pct(stss, 0.5)), ms(pct(stss, 0.95)), float64(pct(logins, 0.5))/float64(floor))

	// Throughput: clients POSTing ready-made login requests (each its own
	// key and proof, made before the clock starts) on kept-alive
	// connections; the issuer checks, asks STS, maps and signs each.
	reqs := make([][]byte, 16)
	for i := range reqs {
		k, _ := pki.GenerateKey(pki.ECDSAP256, nil)
		der, _ := x509.MarshalPKIXPublicKey(k.Public())
		p, err := awsident.Prove(context.Background(), people.Alice, "login", awsident.KeyHash(der), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		reqs[i], _ = json.Marshal(issuer.Request{Proof: *p, PublicKey: der})
	}
	fmt.Fprintf(md, "Issuer throughput: concurrent clients POSTing login requests for 5 s each (the issuer, moto's STS and the clients share the machine's %d cores).\n\n| clients | logins/s | median | p95 | failures |\n|---|---|---|---|---|\n", runtime.NumCPU())
	for _, conc := range []int{1, 4, 16} {
		var mu sync.Mutex
		var lat []time.Duration
		fails := 0
		stop := time.Now().Add(5 * time.Second)
		var wg sync.WaitGroup
		for c := 0; c < conc; c++ {
			wg.Add(1)
			go func(c int) {
				defer wg.Done()
				cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
				for time.Now().Before(stop) {
					start := time.Now()
					resp, err := cl.Post(url, "application/json", bytes.NewReader(reqs[c]))
					ok := err == nil && resp.StatusCode == http.StatusOK
					if err == nil {
						resp.Body.Close()
					}
					mu.Lock()
					if ok {
						lat = append(lat, time.Since(start))
					} else {
						fails++
					}
					mu.Unlock()
				}
			}(c)
		}
		wg.Wait()
		fmt.Fprintf(md, "| %d | %.0f | %s | %s | %d |\n", conc, float64(len(lat))/5, ms(pct(lat, 0.5)), ms(pct(lat, 0.95)), fails)
	}
	md.WriteString("\n")
}
