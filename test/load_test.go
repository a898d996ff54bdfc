package test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/client"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/test/harness"
)

// peakRSS reads a process's high-water resident set (VmHWM) in KiB.
func peakRSS(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			kb, _ := strconv.Atoi(strings.Fields(l)[1])
			return kb
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// Many clients at once, each running jobs that print far more than the log
// buffer holds: every request succeeds and the node's memory stays within
// the caps (jobs x logBufferBytes) plus its own baseline.
func TestLoadMemoryBounded(t *testing.T) {
	joblet, _ := harness.Bins(t)
	home, _, env := smNode(t, harness.ClosedURL, "USE_SECRETS_MANAGER=false")
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	cfgPath := filepath.Join(home, "config", "joblet-config.yml")
	cfg, _ := config.LoadServer(cfgPath)
	const capBytes = 256 << 10
	cfg.Jobs.LogBufferBytes = capBytes
	b, _ := cfg.Marshal()
	os.WriteFile(cfgPath, b, 0o600)
	node := harness.Start(t, env, joblet, "server", "--config", cfgPath)
	rnxCfg, _ := config.LoadRnx(filepath.Join(home, "config", "rnx-config.yml"))
	harness.Eventually(t, 10*time.Second, "node up", func() error { return oneRequest(filepath.Join(home, "config", "rnx-config.yml")) })
	base := peakRSS(t, node.Cmd.Process.Pid)

	// Two loads on the same node, the second printing four times as much:
	// the log caps hold the jobs' output, so the node's peak memory must not
	// follow the volume. (What remains is the Go runtime's GC headroom and
	// gRPC's buffers for 32 connections; GOMEMLIMIT trims the former.)
	var peaks []int
	for _, outBytes := range []int{8 << 20, 32 << 20} {
		const clients, jobsEach = 32, 2
		var wg sync.WaitGroup
		var mu sync.Mutex
		var failures []string
		requests := 0
		start := time.Now()
		for i := 0; i < clients; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := client.Dial("load", rnxCfg.Nodes["developer"])
				if err != nil {
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
					return
				}
				defer c.Close()
				for j := 0; j < jobsEach; j++ {
					_, calls, err := runAndDrain(c, outBytes)
					mu.Lock()
					requests += calls
					if err != nil {
						failures = append(failures, err.Error())
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		peak := peakRSS(t, node.Cmd.Process.Pid)
		peaks = append(peaks, peak)
		t.Logf("load: %d clients, %d jobs printing %d MiB each (%d MiB in all), %d requests in %s, %d failed; node peak RSS %d MiB (baseline %d MiB, log cap %d KiB per job)",
			clients, clients*jobsEach, outBytes>>20, clients*jobsEach*outBytes>>20, requests, time.Since(start).Round(time.Millisecond), len(failures), peak>>10, base>>10, capBytes>>10)
		if len(failures) > 0 {
			t.Fatalf("%d failures, first: %s", len(failures), failures[0])
		}
	}
	if peaks[1] > peaks[0]*3/2+32<<10 {
		t.Fatalf("peak RSS followed the output volume: %d MiB, then %d MiB for four times the output", peaks[0]>>10, peaks[1]>>10)
	}
}

// runAndDrain runs a job printing n bytes, follows its log to the end and
// checks its status; it returns the bytes received and the calls made.
func runAndDrain(c *client.Conn, n int) (int, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	j, err := c.Jobs.RunJob(ctx, &pb.RunJobRequest{Command: "sh", Args: []string{"-c", fmt.Sprintf("head -c %d /dev/zero | tr '\\\\0' x", n)}})
	if err != nil {
		return 0, 1, err
	}
	s, err := c.Jobs.GetJobLogs(ctx, &pb.GetJobLogsRequest{Id: j.Id, Follow: true})
	if err != nil {
		return 0, 2, err
	}
	got := 0
	for {
		ch, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return got, 2, err
		}
		got += len(ch.Data)
	}
	st, err := c.Jobs.GetJobStatus(ctx, &pb.GetJobStatusRequest{Id: j.Id})
	if err != nil {
		return got, 3, err
	}
	if st.Status != "COMPLETED" || !st.OutputTruncated {
		return got, 3, fmt.Errorf("job %s: status %s, truncated %v", j.Id, st.Status, st.OutputTruncated)
	}
	return got, 3, nil
}
