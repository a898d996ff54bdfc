package test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/testutil/reliability"
	"github.com/ehsaniara/joblet/test/harness"
)

// A reader opens 1,100 authenticated connections to a node whose open-file
// limit is 1,024 (before security.maxConnections, 1,013 got through and
// the node ran out of descriptors: admin calls timed out, config reloads
// failed with "too many open files"). The node holds at most its derived
// cap (3/4 of the limit less the pending handshakes), closing the reader's
// idle connections; the admin's rnx info succeeds, a config reload finds
// descriptors, and the log has no "too many open files".
func TestReaderConnFloodUnderLowFdLimit(t *testing.T) {
	const (
		nofile = 1024
		flood  = 1100
	)
	harness.RaiseNoFile(t, 2*flood) // this process's client sockets
	joblet, rnx := harness.Bins(t)
	home := t.TempDir()
	port := harness.FreePort(t)
	env := harness.Env("JOBLET_HOME="+home, "USE_SECRETS_MANAGER=false", "JOBLET_SERVER_ADDRESS=127.0.0.1",
		"JOBLET_LISTEN_ADDRESS=127.0.0.1", "JOBLET_SERVER_PORT="+strconv.Itoa(port))
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	cfgPath := filepath.Join(home, "config", "joblet-config.yml")
	// ulimit -n sets the soft and hard limits: the node cannot raise it.
	node := harness.Start(t, env, "/bin/sh", "-c", fmt.Sprintf(`ulimit -n %d && exec "$@"`, nofile), "sh", joblet, "server", "--config", cfgPath)
	rnxPath := filepath.Join(home, "config", "rnx-config.yml")
	env = append(env, "RNX_CONFIG="+rnxPath)
	harness.Eventually(t, 10*time.Second, "node serving", func() error {
		if r := harness.Run(t, env, rnx, "info"); r.Code != 0 {
			return errors.New(r.String())
		}
		return nil
	})
	for _, want := range []string{fmt.Sprintf("maxConnections=%d ", nofile*3/4-config.DefaultMaxPendingHandshakes), fmt.Sprintf("openFileLimit=%d ", nofile)} {
		if out := node.Output(); !strings.Contains(out, want) {
			t.Fatalf("the node's log lacks %q:\n%s", want, out)
		}
	}
	rnxCfg, err := config.LoadRnx(rnxPath)
	if err != nil {
		t.Fatal(err)
	}
	var (
		ccs    = make([]*grpc.ClientConn, flood)
		served atomic.Int64
		failed atomic.Int64
		last   atomic.Value
		wg     sync.WaitGroup
		next   atomic.Int64
	)
	defer func() {
		for _, cc := range ccs {
			if cc != nil {
				cc.Close()
			}
		}
	}()
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < flood; i = next.Add(1) - 1 {
				cc := grpcTo(t, rnxCfg.Nodes["reader"])
				ccs[i] = cc
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
				cancel()
				if err != nil {
					failed.Add(1)
					last.Store(err)
				} else {
					served.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", node.Cmd.Process.Pid))
	t.Logf("%d reader connections: %d calls served, %d failed (last %v); the node holds %d descriptors of %d",
		flood, served.Load(), failed.Load(), last.Load(), len(fds), nofile)
	if served.Load() < flood*99/100 {
		t.Errorf("only %d of %d reader connections were served: a newcomer past the cap must not be refused", served.Load(), flood)
	}
	// The reader still holds its connections (idle, the cap's worth).
	const calls = 10
	for i := 0; i < calls; i++ {
		if r := harness.Run(t, env, rnx, "info"); r.Code != 0 {
			t.Fatalf("admin rnx info %d of %d with the reader's connections held: %s", i+1, calls, r)
		}
	}
	// A config reload needs descriptors too.
	now := time.Now()
	if err := os.Chtimes(cfgPath, now, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // the node polls the file every second; nothing to wait on when it succeeds
	if r := harness.Run(t, env, rnx, "info"); r.Code != 0 {
		t.Fatalf("admin rnx info after the reload: %s", r)
	}
	out := node.Output()
	for _, bad := range []string{"too many open files", "cannot be loaded"} {
		if strings.Contains(out, bad) {
			t.Fatalf("the node's log has %q:\n%s", bad, out)
		}
	}
	reliability.Record(t, "Load", fmt.Sprintf("a reader opens %d authenticated connections to a node limited to %d open files", flood, nofile),
		fmt.Sprintf("%d served, the node at %d descriptors; %d admin rnx info all succeeded, no \"too many open files\"", served.Load(), len(fds), calls))
}
