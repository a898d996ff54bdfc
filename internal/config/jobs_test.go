package config

import (
	"strings"
	"testing"
)

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "1024": 1024, "512M": 512 << 20, "512Mi": 512 << 20, "2G": 2 << 30, "1GiB": 1 << 30, "64k": 64 << 10} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("%q: %d %v, want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"-1", "0", "12X", "M", "1.5G", "99999999999T"} {
		if _, err := ParseBytes(in); err == nil {
			t.Errorf("%q parsed", in)
		}
	}
}

func TestJobsValidate(t *testing.T) {
	for _, tc := range []struct {
		j    Jobs
		want string
	}{
		{Jobs{Isolation: "partial"}, "jobs.isolation"},
		{Jobs{Network: "bridge"}, "jobs.network"},
		{Jobs{MemoryDefault: "2G", MemoryMax: "1G"}, "jobs.memoryDefault 2G is above jobs.memoryMax 1G"},
		{Jobs{MemoryMax: "lots"}, "jobs.memoryMax"},
		{Jobs{DiskDefault: "2G", DiskMax: "1G"}, "jobs.diskDefault 2G is above jobs.diskMax 1G"},
		{Jobs{DiskDefault: "-1"}, "jobs.diskDefault"},
		{Jobs{CPUDefault: 200, CPUMax: 100}, "jobs.cpuDefault 200 is above jobs.cpuMax 100"},
		{Jobs{ProcsDefault: 10, ProcsMax: 5}, "jobs.procsDefault"},
		{Jobs{MaxRunning: -1}, "jobs.maxRunning"},
		{Jobs{Dir: "jobs"}, "jobs.dir"},
		{Jobs{ListPageMax: -1}, "jobs.listPageMax"},
		{Jobs{MaxRequestBytes: 2 << 20}, "jobs.maxRequestBytes 2097152 is above 1048576"},
	} {
		if err := tc.j.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.j, err, tc.want)
		}
	}
	ok := Jobs{Isolation: "none", Network: "host", MemoryDefault: "256M", MemoryMax: "1G", CPUDefault: 50, CPUMax: 200, MaxRunning: 4, ListPageMax: 10, MaxRequestBytes: 1 << 20}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestSizeText(t *testing.T) {
	for n, want := range map[int64]string{512 << 20: "512 MiB", 1 << 30: "1 GiB", 1536 << 10: "1536 KiB", 1000: "1000 bytes", 3 << 40: "3 TiB"} {
		if got := SizeText(n); got != want {
			t.Errorf("SizeText(%d) = %q, want %q", n, got, want)
		}
	}
}
