package test

import (
	"os/exec"
	"strings"
	"testing"
)

// The layers the design promises, checked from the module graph: rnx links
// no KMS code (it never signs), the store layer knows nothing of
// certificates, the lifecycle reaches no cloud SDK and no gRPC client, and
// pki is pure; the package that dials nodes knows nothing of the lifecycle
// or the store; the server knows jobs, not the sandbox that contains them.
func TestLayers(t *testing.T) {
	deps := func(pkg string) []string {
		t.Helper()
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		return strings.Fields(string(out))
	}
	for _, tc := range []struct {
		pkg       string
		forbidden []string
	}{
		{"../cmd/rnx", []string{"/internal/kmssigner", "/internal/backend/kms", "aws-sdk-go-v2/service/kms"}},
		{"../internal/secretstore", []string{"/internal/pki", "/internal/certs"}},
		{"../internal/certs", []string{"aws-sdk-go-v2", "/internal/kmssigner", "/internal/client", "google.golang.org/grpc", "/internal/backend"}},
		{"../internal/pki", []string{"github.com/ehsaniara/joblet/internal/"}},
		{"../internal/idpolicy", []string{"aws-sdk-go-v2", "google.golang.org/grpc"}}, // nodes hold it: pure
		{"../internal/client", []string{"/internal/certs", "/internal/secretstore"}},
		{"../internal/server", []string{"/internal/sandbox"}},
		{"../internal/jobs", []string{"/internal/sandbox"}},
	} {
		for _, d := range deps(tc.pkg) {
			for _, f := range tc.forbidden {
				if strings.Contains(d, f) && !strings.HasSuffix(d, "/internal/pki") {
					t.Errorf("%s depends on %s", tc.pkg, d)
				}
			}
		}
	}
}
