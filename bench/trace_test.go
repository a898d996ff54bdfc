//go:build bench

package bench

// TestTraceBurst (not part of BENCHMARKS.md): one quota-limited burst of
// TRACE_N processes (default 200), every call timed, by connection, for
// working on the burst. TRACE_ENV adds settings (space-separated k=v) to
// every process; TRACE_OUT names the file the trace goes to.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/test/harness"
)

type traced struct {
	at     time.Duration
	dur    time.Duration
	conn   string
	action string
	secret string
	status string
}

type statusWriter struct {
	http.ResponseWriter
	code int
	typ  string
}

func (w *statusWriter) WriteHeader(c int) {
	w.code = c
	w.typ = w.ResponseWriter.Header().Get("X-Amzn-ErrorType")
	w.ResponseWriter.WriteHeader(c)
}

func TestTraceBurst(t *testing.T) {
	m, err := harness.StartMoto()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	moto = m
	n := 200
	if s := os.Getenv("TRACE_N"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	quota := harness.StartAWSProxy(t, m.URL)
	u, _ := url.Parse(quota.URL)
	rp := httputil.NewSingleHostReverseProxy(u)
	var mu sync.Mutex
	var calls []traced
	var start time.Time
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		action := r.Header.Get("X-Amz-Target")
		if i := strings.LastIndexByte(action, '.'); i >= 0 {
			action = action[i+1:]
		}
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var in struct {
			SecretId, Name string
			SecretIdList   []string
		}
		json.Unmarshal(body, &in)
		sec := in.SecretId + in.Name
		if len(in.SecretIdList) > 0 {
			sec = fmt.Sprintf("[%d]", len(in.SecretIdList))
		}
		sec = strings.TrimPrefix(sec, "joblet/")
		sw := &statusWriter{ResponseWriter: w, code: 200}
		t0 := time.Now()
		rp.ServeHTTP(sw, r)
		st := strconv.Itoa(sw.code)
		if sw.typ != "" {
			st = sw.typ
		}
		mu.Lock()
		calls = append(calls, traced{t0.Sub(start), time.Since(t0), r.RemoteAddr, action, sec, st})
		mu.Unlock()
	}))
	defer front.Close()
	joblet, _ := harness.Bins(t)
	if b := os.Getenv("TRACE_BIN"); b != "" {
		joblet = b // another build, for A/B runs
	}
	var extra []string
	if s := os.Getenv("TRACE_ENV"); s != "" {
		extra = strings.Fields(s)
	}
	cmds := make([]*exec.Cmd, n)
	for i := range cmds {
		cmds[i] = exec.Command(joblet, "certs", "bootstrap")
		cmds[i].Env = smEnv(front.URL, t.TempDir(), extra...)
	}
	scaled := map[string]float64{}
	for k, v := range awsQuotas {
		scaled[k] = v / quotaScale
	}
	if os.Getenv("TRACE_NOQUOTA") == "" {
		quota.SetQuotas(scaled)
	}
	var wg sync.WaitGroup
	ends := make([]time.Duration, n)
	failed := 0
	var childCPU time.Duration
	motoPid := pidListening(m.URL)
	moto0 := procCPU(motoPid)
	var ru0 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	start = time.Now()
	for i, c := range cmds {
		wg.Add(1)
		go func(i int, c *exec.Cmd) {
			defer wg.Done()
			out, err := c.CombinedOutput()
			ends[i] = time.Since(start)
			mu.Lock()
			childCPU += c.ProcessState.UserTime() + c.ProcessState.SystemTime()
			mu.Unlock()
			if err != nil {
				mu.Lock()
				failed++
				mu.Unlock()
				t.Logf("failed: %v\n%s", err, out)
			}
		}(i, c)
	}
	wg.Wait()
	total := time.Since(start)
	var ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	self := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	sort.Slice(ends, func(i, j int) bool { return ends[i] < ends[j] })
	var b strings.Builder
	fmt.Fprintf(&b, "bin=%s N=%d env=%q total=%s failed=%d outcome=%s calls=%d perNode=%.2f\n", joblet, n, extra, total.Round(time.Millisecond), failed, oneCA(t), len(calls), float64(len(calls))/float64(n))
	fmt.Fprintf(&b, "cpu: processes %.1f s (%.0f ms each), moto %.1f s, test+proxies %.1f s\n", childCPU.Seconds(), childCPU.Seconds()*1000/float64(n), (procCPU(motoPid) - moto0).Seconds(), self.Seconds())
	fmt.Fprintf(&b, "ends: p10 %.1f p50 %.1f p90 %.1f max %.1f\n", ends[n/10].Seconds(), ends[n/2].Seconds(), ends[n*9/10].Seconds(), ends[n-1].Seconds())
	counts := map[string]int{}
	for _, c := range calls {
		counts[c.action+" "+c.status]++
	}
	fmt.Fprintf(&b, "%s\n", countStr(counts))
	// Per second: how many calls of each action and result.
	bySec := map[int]map[string]int{}
	for _, c := range calls {
		s := int(c.at.Seconds())
		if bySec[s] == nil {
			bySec[s] = map[string]int{}
		}
		bySec[s][c.action+" "+c.status]++
	}
	for s := 0; s <= int(total.Seconds()); s++ {
		fmt.Fprintf(&b, "  s%02d %s\n", s, countStr(bySec[s]))
	}
	// Every CreateSecret, and every call of the connections that made one.
	creators := map[string]bool{}
	for _, c := range calls {
		if c.action == "CreateSecret" && c.status == "200" {
			creators[c.conn] = true
		}
	}
	for conn := range creators {
		fmt.Fprintf(&b, "conn %s (a create passed):\n", conn)
		for _, c := range calls {
			if c.conn == conn {
				fmt.Fprintf(&b, "  %7.3f %5dms %-20s %-28s %s\n", c.at.Seconds(), c.dur.Milliseconds(), c.action, c.secret, c.status)
			}
		}
	}
	fmt.Fprintf(&b, "all creates:\n")
	for _, c := range calls {
		if c.action == "CreateSecret" {
			fmt.Fprintf(&b, "  %7.3f %-22s %-28s %s\n", c.at.Seconds(), c.conn, c.secret, c.status)
		}
	}
	out := os.Getenv("TRACE_OUT")
	if out == "" {
		out = "/tmp/trace.txt"
	}
	os.WriteFile(out, []byte(b.String()), 0o644)
	full, _ := os.Create(out + ".calls")
	for _, c := range calls {
		fmt.Fprintf(full, "%7.3f %5d %-22s %-20s %-28s %s\n", c.at.Seconds(), c.dur.Milliseconds(), c.conn, c.action, c.secret, c.status)
	}
	full.Close()
	t.Logf("N=%d total %s failed %d; trace in %s", n, total.Round(time.Millisecond), failed, out)
}

// pidListening finds the moto process serving url (its -p PORT argument).
func pidListening(u string) int {
	port := u[strings.LastIndexByte(u, ':')+1:]
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		cl, _ := os.ReadFile("/proc/" + d.Name() + "/cmdline")
		args := strings.Split(string(cl), "\x00")
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-p" && args[i+1] == port && strings.Contains(string(cl), "python") {
				return pid
			}
		}
	}
	return 0
}

// procCPU is a process's user+system CPU so far, its threads' included.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return time.Duration(ut+st) * 10 * time.Millisecond
}
