package sandbox

import (
	"io"

	"github.com/ehsaniara/joblet/internal/containment"
)

// Linking this package makes it the binary's containment.Runtime.
func init() { containment.Register(mechanism{}) }

// mechanism is this package as the job runner sees it.
type mechanism struct{}

func (mechanism) JobUser(name string) (int, int, string, error) { return JobUser(name) }
func (mechanism) GuardHostNetwork(uid int) error                { return GuardHostNetwork(uid, MetadataAddrs) }
func (mechanism) MakeWorkDir(root, id string, uid, gid int) (string, error) {
	return MakeWorkDir(root, id, uid, gid)
}
func (mechanism) Probe(spec Spec) error                       { return Probe(spec) }
func (mechanism) RemoveGroups(ids []string) ([]string, error) { return RemoveGroups(ids) }

func (mechanism) Start(spec Spec, stdout, stderr io.Writer) (containment.Process, error) {
	p, err := Start(spec, stdout, stderr)
	if err != nil {
		return nil, err // not a nil *Process in a non-nil interface
	}
	return p, nil
}
