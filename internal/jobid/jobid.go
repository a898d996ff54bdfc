// Package jobid is the format of a job's ID: the node that runs the job,
// then a random part, so a client can find the node again from the ID alone
// (through a load balancer, or directly from its node directory).
//
// An ID is TAG "_" 12 lowercase hex digits, where TAG is the node's id kept
// to [A-Za-z0-9_-] (other characters become '-') and to 64 characters;
// scripts parse IDs, and the node uses them as directory names, so nothing
// else ever appears in one. The random part has no '_', so an ID splits at
// its last '_' whatever the node id holds. IDs made before this format (12
// hex digits, no node) still parse, with no node.
package jobid

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
)

// randomLen is the length of the random part: 48 bits, as IDs had before.
const randomLen = 12

// maxTag bounds the node part: an ID stays a short file name.
const maxTag = 64

// Sep separates the node's tag from the random part.
const Sep = "_"

// Tag is node id as it appears in job IDs ("" for no node).
func Tag(nodeID string) string {
	var b strings.Builder
	for _, r := range nodeID {
		if b.Len() >= maxTag {
			break
		}
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return b.String()
}

// New returns a fresh job ID for a job on the node nodeID ("" : an ID with
// no node, as before).
func New(nodeID string) (string, error) {
	b := make([]byte, randomLen/2)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("job id: %w", err)
	}
	r := hex.EncodeToString(b)
	if t := Tag(nodeID); t != "" {
		return t + Sep + r, nil
	}
	return r, nil
}

// Node returns the tag of the node an ID names, and whether id has the
// shape of a job ID at all. An ID from before the format names no node
// ("" and true).
func Node(id string) (tag string, ok bool) {
	random := id
	if i := strings.LastIndex(id, Sep); i >= 0 {
		tag, random = id[:i], id[i+1:]
		if tag == "" || Tag(tag) != tag {
			return "", false
		}
	}
	if len(random) != randomLen {
		return "", false
	}
	for _, c := range random {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", false
		}
	}
	return tag, true
}

// On reports whether id names the node nodeID.
func On(id, nodeID string) bool {
	tag, ok := Node(id)
	return ok && tag != "" && tag == Tag(nodeID)
}
