package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/ehsaniara/joblet/internal/client"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/testutil/reliability"
	"github.com/ehsaniara/joblet/test/harness"
)

// rssKiB reads a process's current resident set (VmRSS) in KiB.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			kb, _ := strconv.Atoi(strings.Fields(l)[1])
			return kb
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// grpcTo opens one connection to a node entry, as rnx does (mutual TLS
// from the config), for the standard services rnx has no command for.
func grpcTo(t *testing.T, n *config.Node) *grpc.ClientConn {
	t.Helper()
	tc, err := client.TLSConfig(n)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(n.Address, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	return cc
}

// A reader opens 20,000 health-watch streams over 80 connections: the node
// holds security.maxStreamsPerRole of them and refuses the rest at once
// with RESOURCE_EXHAUSTED naming the limit; an admin is served meanwhile;
// a stream past security.maxStreamsPerConnection on one connection waits
// for a slot. When the reader leaves, the node's resident memory is back
// near its idle baseline within a minute, without anyone's help.
func TestStreamFloodBoundedAndReleased(t *testing.T) {
	joblet, _ := harness.Bins(t)
	home, _, env := smNode(t, harness.ClosedURL, "USE_SECRETS_MANAGER=false")
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	cfgPath := filepath.Join(home, "config", "joblet-config.yml")
	node := harness.Start(t, env, joblet, "server", "--config", cfgPath)
	rnxPath := filepath.Join(home, "config", "rnx-config.yml")
	rnxCfg, err := config.LoadRnx(rnxPath)
	if err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 10*time.Second, "node up", func() error { return oneRequest(rnxPath) })
	pid := node.Cmd.Process.Pid
	// The idle baseline: after one call, once the resident set is steady.
	base := steadyRSS(t, pid)

	const (
		conns, perConn = 80, 250 // 20,000 streams; 250 < the 256 a connection carries
		roleCap        = config.DefaultMaxStreamsPerRole
	)
	ctx, leave := context.WithCancel(context.Background())
	defer leave()
	var (
		mu                      sync.Mutex
		opened, refused, others int
		otherErr                error
		ccs                     []*grpc.ClientConn
		wg                      sync.WaitGroup
	)
	start := time.Now()
	for i := 0; i < conns; i++ {
		cc := grpcTo(t, rnxCfg.Nodes["reader"])
		ccs = append(ccs, cc)
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := healthpb.NewHealthClient(cc)
			for j := 0; j < perConn; j++ {
				err := openWatch(ctx, h)
				mu.Lock()
				switch {
				case err == nil:
					opened++
				case status.Code(err) == codes.ResourceExhausted && strings.Contains(err.Error(), "security.maxStreamsPerRole"):
					refused++
				default:
					others++
					otherErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	peak := rssKiB(t, pid)
	t.Logf("20,000 watches: %d open, %d refused, %d other errors in %s; node RSS %d KiB (idle %d KiB)", opened, refused, others, took.Round(time.Millisecond), peak, base)
	if opened != roleCap || refused != conns*perConn-roleCap || others != 0 {
		t.Fatalf("%d open, %d refused, %d other (last: %v): want %d open and the rest refused with RESOURCE_EXHAUSTED", opened, refused, others, otherErr, roleCap)
	}
	// Another role is served, streams included; the reader's next stream
	// is still refused, at once.
	admin := grpcTo(t, rnxCfg.Nodes["default"])
	defer admin.Close()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := openWatch(cctx, healthpb.NewHealthClient(admin)); err != nil {
		t.Fatalf("an admin's stream while the reader holds its share: %v", err)
	}
	if err := oneRequest(rnxPath); err != nil {
		t.Fatalf("an admin's call while the reader holds its share: %v", err)
	}
	// One connection filled to its own cap (256 streams): stream 257 waits
	// for a slot (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS), the node
	// unaffected. An admin's: a reader's would be refused by its role's cap
	// first.
	full := grpcTo(t, rnxCfg.Nodes["default"])
	defer full.Close()
	fh := healthpb.NewHealthClient(full)
	for j := 0; j < config.DefaultMaxStreamsPerConn; j++ {
		if err := openWatch(ctx, fh); err != nil {
			t.Fatalf("admin stream %d: %v", j, err)
		}
	}
	wctx, wcancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	err = openWatch(wctx, fh)
	wcancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a stream past security.maxStreamsPerConnection on one connection: %v, want it to wait (DeadlineExceeded)", err)
	}
	if err := oneRequest(rnxPath); err != nil {
		t.Fatalf("a call on a new connection while one is full: %v", err)
	}

	// Everyone leaves: the connections close, the node ends their streams.
	leave()
	for _, cc := range append(ccs, full, admin) {
		cc.Close()
	}
	left := time.Now()
	limit := max(base*11/10, base+8<<10)
	var now int
	for {
		now = rssKiB(t, pid)
		if now <= limit || time.Since(left) > time.Minute {
			break
		}
		time.Sleep(time.Second)
	}
	t.Logf("node RSS %d KiB %s after the clients left (idle %d KiB, peak %d KiB, limit %d KiB)", now, time.Since(left).Round(time.Second), base, peak, limit)
	if now > limit {
		t.Fatalf("node RSS %d KiB a minute after the clients left: idle baseline %d KiB, want at most %d KiB", now, base, limit)
	}
	reliability.Record(t, "Load", "a reader opens 20,000 health-watch streams over 80 connections, then leaves",
		fmt.Sprintf("%d held (security.maxStreamsPerRole), %d refused at once with RESOURCE_EXHAUSTED; an admin served; RSS %d MiB at the peak, %d MiB %s after the reader left (idle %d MiB)",
			opened, refused, peak>>10, now>>10, time.Since(left).Round(time.Second), base>>10))
}

// openWatch opens a health watch and reads its first answer (the stream is
// then held until ctx ends).
func openWatch(ctx context.Context, h healthpb.HealthClient) error {
	s, err := h.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	if _, err := s.Recv(); err != nil {
		return err
	}
	return nil
}

// steadyRSS waits until a process's resident set stops moving (within
// 256 KiB over 2 s, at most 20 s) and returns it.
func steadyRSS(t *testing.T, pid int) int {
	t.Helper()
	prev := rssKiB(t, pid)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		time.Sleep(2 * time.Second)
		cur := rssKiB(t, pid)
		if d := cur - prev; d < 256 && d > -256 {
			return cur
		}
		prev = cur
	}
	return prev
}
