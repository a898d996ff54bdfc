package harness

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// IMDSBinary finds ec2-metadata-mock ($EC2_METADATA_MOCK, then PATH). It is
// a required test component: scripts/test.sh installs it.
func IMDSBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("EC2_METADATA_MOCK"); p != "" {
		return p
	}
	p, err := exec.LookPath("ec2-metadata-mock")
	if err != nil {
		t.Fatalf("ec2-metadata-mock is required and not installed: run scripts/test.sh, or go install github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock@v1.13.0")
	}
	return p
}

// StartIMDS runs the EC2 metadata mock (IMDSv2 only) for one instance, with
// role credentials, and returns its URL.
func StartIMDS(t testing.TB, instanceID, region string) string {
	t.Helper()
	bin := IMDSBinary(t)
	dir := t.TempDir()
	cfg := map[string]any{"metadata": map[string]any{
		"paths": map[string]any{"iam-security-credentials": "/latest/meta-data/iam/security-credentials/joblet-node"},
		"values": map[string]any{
			"instance-id": instanceID, "placement-region": region,
			"iam-security-credentials-role": "joblet-node",
			"iam-security-credentials": map[string]any{"Code": "Success", "LastUpdated": "2026-01-01T00:00:00Z", "Type": "AWS-HMAC",
				"AccessKeyId": "AKIAIMDSMOCK0000", "SecretAccessKey": "imds-mock-secret", "Token": "imds-mock-token",
				"Expiration": time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)},
		},
	}}
	b, _ := json.Marshal(cfg)
	path := filepath.Join(dir, "imds.json")
	os.WriteFile(path, b, 0o600)
	port := FreePort(t)
	p := Start(t, append(Env(), "HOME="+dir), bin, "-n", "127.0.0.1", "-p", strconv.Itoa(port), "-I", "-c", path)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	Eventually(t, 15*time.Second, "ec2-metadata-mock up", func() error {
		req, _ := http.NewRequest(http.MethodPut, url+"/latest/api/token", nil)
		req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("%v\n%s", err, p.Output())
		}
		resp.Body.Close()
		return nil
	})
	return url
}
