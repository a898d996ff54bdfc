package cloud

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

// Instance is what the EC2 metadata service says about this machine.
type Instance struct {
	ID     string
	Region string
}

// DefaultIMDSTimeout bounds EC2 detection. On EC2 the metadata service
// answers in milliseconds; off EC2 nothing answers and this is what a
// laptop run pays at most (a refused connection costs nothing).
const DefaultIMDSTimeout = time.Second

// ErrNotEC2 means no metadata service answered.
var ErrNotEC2 = errors.New("not on EC2: no instance metadata service answered")

// DetectEC2 asks the instance metadata service (IMDSv2, at
// AWS_EC2_METADATA_SERVICE_ENDPOINT when set) for the instance id and
// region. It makes one attempt per request, without the SDK's retries:
// those retry a refused connection until the deadline, which would make
// every off-EC2 run wait the full timeout.
func DetectEC2(ctx context.Context, timeout time.Duration) (Instance, error) {
	if strings.EqualFold(os.Getenv("AWS_EC2_METADATA_DISABLED"), "true") {
		return Instance{}, fmt.Errorf("%w (AWS_EC2_METADATA_DISABLED=true)", ErrNotEC2)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return Instance{}, fmt.Errorf("load AWS configuration: %w", err)
	}
	client := imds.NewFromConfig(cfg, func(o *imds.Options) {
		o.Retryer = aws.NopRetryer{}
		o.ClientEnableState = imds.ClientEnabled
		o.EnableFallback = aws.FalseTernary // IMDSv2 only
	})
	id, err := metadata(ctx, client, "instance-id")
	if err != nil {
		return Instance{}, fmt.Errorf("%w: %v", ErrNotEC2, err)
	}
	// placement/region is the instance's region; the identity document
	// (what the SDK's GetRegion reads) says the same on real EC2.
	region, err := metadata(ctx, client, "placement/region")
	if err != nil || region == "" {
		r, rerr := client.GetRegion(ctx, &imds.GetRegionInput{})
		if rerr != nil {
			return Instance{}, fmt.Errorf("instance metadata answered but gave no region: %w", rerr)
		}
		region = r.Region
	}
	return Instance{ID: id, Region: region}, nil
}

func metadata(ctx context.Context, c *imds.Client, path string) (string, error) {
	out, err := c.GetMetadata(ctx, &imds.GetMetadataInput{Path: path})
	if err != nil {
		return "", err
	}
	defer out.Content.Close()
	b, err := io.ReadAll(io.LimitReader(out.Content, 4096))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// LooksLikeEC2 reads the firmware's own words (no network) and reports
// whether this machine says it is an EC2 instance. Used to refuse a silent
// fall back to embedded mode when the metadata service is blocked on a real
// instance (a container without a hop, say).
func LooksLikeEC2(root fs.FS) (bool, string) {
	checks := []struct {
		path string
		ok   func(string) bool
	}{
		{"sys/class/dmi/id/sys_vendor", func(s string) bool { return s == "Amazon EC2" }},
		{"sys/class/dmi/id/board_asset_tag", func(s string) bool { return strings.HasPrefix(s, "i-") }},
		{"sys/hypervisor/uuid", func(s string) bool { return strings.HasPrefix(strings.ToLower(s), "ec2") }},
	}
	for _, c := range checks {
		b, err := fs.ReadFile(root, c.path)
		if err != nil {
			continue
		}
		if v := strings.TrimSpace(string(b)); c.ok(v) {
			return true, "/" + c.path + " says " + v
		}
	}
	return false, ""
}
