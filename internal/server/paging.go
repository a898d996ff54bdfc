package server

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/jobs"
)

// DefaultListPageMax is the most jobs one ListJobs reply carries when
// jobs.listPageMax is not set.
const DefaultListPageMax = 100

// pageBytes bounds one ListJobs reply whatever its count: gRPC refuses a
// message above 4 MiB, and one job may carry jobs.maxRequestBytes (at most
// 1 MiB) of command and arguments. A page always holds at least one job.
const pageBytes = 1 << 20

// page is the part of all (in jobs.Before order) after token, at most size
// jobs and about pageBytes, rendered by render; next resumes after it, ""
// when nothing is left. The token is the position of the last job sent
// (start time and id), so jobs that start or are evicted between pages
// neither shift nor repeat the rest.
func page(all []jobs.Snapshot, token string, size int, render func(jobs.Snapshot) *pb.Job) (out []*pb.Job, next string, err error) {
	start := 0
	if token != "" {
		after, err := parseToken(token)
		if err != nil {
			return nil, "", err
		}
		for start < len(all) && !jobs.Before(after, all[start]) {
			start++
		}
	}
	bytes := 0
	i := start
	for ; i < len(all) && len(out) < size; i++ {
		j := render(all[i])
		n := proto.Size(j) + 8 // the field's tag and length
		if len(out) > 0 && bytes+n > pageBytes {
			break
		}
		bytes += n
		out = append(out, j)
	}
	if i < len(all) {
		next = makeToken(all[i-1])
	}
	return out, next, nil
}

func makeToken(s jobs.Snapshot) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(s.Started.UnixNano(), 10) + "/" + s.ID))
}

func parseToken(token string) (jobs.Snapshot, error) {
	bad := fmt.Errorf("page_token %q is not one this node issued: list again from the first page (no page_token)", token)
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return jobs.Snapshot{}, bad
	}
	nano, id, ok := strings.Cut(string(b), "/")
	n, err := strconv.ParseInt(nano, 10, 64)
	if !ok || err != nil {
		return jobs.Snapshot{}, bad
	}
	return jobs.Snapshot{ID: id, Started: time.Unix(0, n)}, nil
}
