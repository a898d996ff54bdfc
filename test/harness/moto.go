package harness

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Moto is a running moto_server: Secrets Manager (and IAM, KMS) on loopback.
type Moto struct {
	URL string
	cmd *exec.Cmd
	log *bytes.Buffer
}

// StartMoto starts moto_server on a free 127.0.0.1 port, through
// moto_launcher.py (beside this file), which corrects where moto 5.2.1
// differs from AWS (Secrets Manager's stages and rotation, KMS signing) and
// routes Lambda invocations to the Runtime Interface Emulator (MotoFunction):
// see the launcher. extraEnv
// is added to its environment (INITIAL_NO_AUTH_ACTION_COUNT=N turns on IAM
// checks after N calls). moto is a required test component: missing, it
// fails.
func StartMoto(extraEnv ...string) (*Moto, error) {
	if _, err := exec.LookPath("moto_server"); err != nil {
		return nil, fmt.Errorf("moto_server is required for the Secrets Manager tests and is not installed (pip install 'moto[server]'): %w", err)
	}
	_, file, _, _ := runtime.Caller(0)
	launcher := filepath.Join(filepath.Dir(file), "moto_launcher.py")
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	m := &Moto{URL: "http://127.0.0.1:" + strconv.Itoa(port), log: &bytes.Buffer{}}
	m.cmd = exec.Command("python3", launcher, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	m.cmd.Env = append(os.Environ(), extraEnv...)
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start moto_server: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(m.URL + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			return m, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	m.Stop()
	return nil, fmt.Errorf("moto_server did not start within 30s:\n%s", m.log)
}

// Stop ends moto_server (its whole process group).
func (m *Moto) Stop() {
	if m.cmd != nil && m.cmd.Process != nil {
		syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
		m.cmd.Wait()
	}
}

// Reset empties every emulated service.
func (m *Moto) Reset(t testing.TB) {
	t.Helper()
	if err := m.TryReset(); err != nil {
		t.Fatal(err)
	}
}

// TryReset is Reset returning its error.
func (m *Moto) TryReset() error {
	resp, err := http.Post(m.URL+"/moto-api/reset", "application/json", nil)
	if err != nil {
		return fmt.Errorf("reset moto: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("reset moto: %s", resp.Status)
	}
	return nil
}

// AWSEnv is the environment that points the SDK (and the aws CLI) at url
// for Secrets Manager, with static test credentials and a closed metadata
// endpoint so nothing reaches the real 169.254.169.254.
func AWSEnv(url string) []string {
	return []string{
		"AWS_ENDPOINT_URL_SECRETS_MANAGER=" + url, "AWS_ENDPOINT_URL=" + url,
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "AWS_REGION=us-east-1", "AWS_DEFAULT_REGION=us-east-1",
		"AWS_EC2_METADATA_SERVICE_ENDPOINT=" + ClosedURL, "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
	}
}

// ClosedURL is a loopback address where nothing listens.
const ClosedURL = "http://127.0.0.1:1"
