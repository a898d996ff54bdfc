// Package reliability lets tests state what they tried and what happened,
// in lines scripts/reliability.sh collects into docs/RELIABILITY.md. The
// table is produced from the tests' own output: a record is printed only
// when its test ends, marked with whether the test passed.
package reliability

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Marker starts every record line.
const Marker = "RELIABILITY"

var (
	// A test's temporary directory: <tmp>/TestName123/001.
	tempDir = regexp.MustCompile(regexp.QuoteMeta(filepath.Clean(os.TempDir())) + `/[^/\s]+/\d+`)
	// Loopback servers the test started (moto, the proxy, nodes).
	loopback = regexp.MustCompile(`(https?://)?127\.0\.0\.\d+:\d+`)
	// gRPC's own rendering after rnx's explanation.
	rpcDetail = regexp.MustCompile(` \(rpc error: .*$`)
)

// Record prints "RELIABILITY|ok|category|tried|outcome" when t ends (FAIL
// instead of ok when t failed). outcome should be built from what the test
// observed, not restated from its expectations. Temporary paths and
// loopback ports are replaced by placeholders so that runs compare.
func Record(t testing.TB, category, tried, outcome string) {
	t.Helper()
	clean := func(s string) string {
		s = rpcDetail.ReplaceAllString(s, "")
		s = tempDir.ReplaceAllString(s, "$$TMP")
		s = loopback.ReplaceAllString(s, "127.0.0.1:PORT")
		return strings.Join(strings.Fields(strings.ReplaceAll(s, "|", "/")), " ")
	}
	line := strings.Join([]string{clean(category), clean(tried), clean(outcome)}, "|")
	t.Cleanup(func() {
		status := "ok"
		if t.Failed() {
			status = "FAIL"
		}
		t.Logf("%s|%s|%s", Marker, status, line)
	})
}
