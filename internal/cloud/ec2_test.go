package cloud

import (
	"context"
	"errors"
	"testing"
	"testing/fstest"
	"time"
)

func TestLooksLikeEC2(t *testing.T) {
	for name, tc := range map[string]struct {
		files fstest.MapFS
		want  bool
	}{
		"nothing":      {fstest.MapFS{}, false},
		"vendor":       {fstest.MapFS{"sys/class/dmi/id/sys_vendor": {Data: []byte("Amazon EC2\n")}}, true},
		"asset tag":    {fstest.MapFS{"sys/class/dmi/id/board_asset_tag": {Data: []byte("i-0123456789abcdef0\n")}}, true},
		"xen uuid":     {fstest.MapFS{"sys/hypervisor/uuid": {Data: []byte("ec2e1916-9099-7caf-fd21-012345abcdef\n")}}, true},
		"other vendor": {fstest.MapFS{"sys/class/dmi/id/sys_vendor": {Data: []byte("QEMU\n")}}, false},
	} {
		if got, why := LooksLikeEC2(tc.files); got != tc.want {
			t.Errorf("%s: %v (%s), want %v", name, got, why, tc.want)
		}
	}
}

// Off EC2 (the metadata endpoint refuses connections) detection gives up at
// once instead of retrying until the deadline.
func TestDetectOffEC2IsFast(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1")
	start := time.Now()
	_, err := DetectEC2(context.Background(), 5*time.Second)
	if !errors.Is(err, ErrNotEC2) {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Fatalf("detection took %v with a refused connection; it must not wait for its deadline", d)
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	if _, err := DetectEC2(context.Background(), time.Second); !errors.Is(err, ErrNotEC2) {
		t.Fatal(err)
	}
}
