// Package secretstore is the shared state of a joblet fleet: the CA and the
// role client certificates, stored once and read by every node.
package secretstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strings"
	"time"
)

// Store is a named set of secrets with versions.
//
// Contract, for every implementation:
//   - Get returns only the secrets that exist: a missing name is absent from
//     the map, never inferred from an error. Any error means the store could
//     not answer, and callers must not treat it as "empty".
//   - Create is create-only: when the name exists it fails with an error for
//     which errors.Is(err, fs.ErrExist) holds. Among concurrent Creates of
//     one name exactly one succeeds. A created secret is readable whole.
//   - Put writes a new current version of an existing secret and keeps the
//     one it replaces as the previous version; errors.Is(err, fs.ErrNotExist)
//     when the secret does not exist.
//   - Implementations are safe for concurrent use and honour ctx.
//
// Versions are labelled as Secrets Manager labels them: the current one
// (AWSCURRENT), the one it replaced (AWSPREVIOUS), and a staged candidate
// of the fleet's own rotation steps (JOBLET_PENDING, see Pending).
// Rotation adds a pending version and moves the labels; it never edits a
// version in place.
//   - GetStage reads the versions labelled stage; a name without one is
//     absent from the map.
//   - PutPending labels value as the pending version of an existing secret
//     without touching the current one; writing the same value again is a
//     no-op.
//   - Promote makes the pending version current and the current one
//     previous; without a pending version it does nothing.
//   - Demote undoes Promote: current becomes pending, previous current.
//   - DropPending removes the pending label.
//
// Versions answers "did anything change?" without reading a value: it
// returns an identifier of the current version of each name that exists
// (absent when missing), which changes whenever the current value does. In
// Secrets Manager it is one ListSecrets call however many names are asked,
// so a node whose fleet did not change pays one call per refresh.
type Store interface {
	Get(ctx context.Context, names []string) (map[string]string, error)
	Versions(ctx context.Context, names []string) (map[string]string, error)
	Create(ctx context.Context, s Secret) error
	Put(ctx context.Context, name, value string) error

	GetStage(ctx context.Context, names []string, stage Stage) (map[string]string, error)
	PutPending(ctx context.Context, name, value string) error
	Promote(ctx context.Context, name string) error
	Demote(ctx context.Context, name string) error
	DropPending(ctx context.Context, name string) error
}

// Stage labels a version of a secret.
type Stage string

const (
	Current  Stage = "AWSCURRENT"
	Previous Stage = "AWSPREVIOUS"
	// Pending is the candidate of a staged rotation (`rotate-ca begin`
	// until promote), which lasts hours or days. It is not AWSPENDING:
	// Secrets Manager takes AWSPENDING on a version that is not current
	// for a rotation of its own in progress and refuses the next
	// RotateSecret of that secret, so a begun rotation would stop the
	// secret's schedule. Stores from before this label held it as
	// AWSPENDING (LegacyPending).
	Pending Stage = "JOBLET_PENDING"
	// RotationPending is Secrets Manager's label for the version one
	// RotateSecret run makes, from createSecret to finishSecret.
	RotationPending Stage = "AWSPENDING"
	// LegacyPending is what Pending was before it had a label of its own.
	LegacyPending = RotationPending
)

// StagedVersionPrefix starts the id of every version PutPending makes
// (awssm: the prefix and the value's hash), the versions
// PendingAdopter moves from LegacyPending: never a rotation's token.
const StagedVersionPrefix = "joblet-"

// PendingAdopter is a store whose staged label changed (Pending): it moves
// a staged version of before to the label of now (awssm.Store).
type PendingAdopter interface {
	AdoptLegacyPending(ctx context.Context, names []string) (moved []string, err error)
}

// Remover is a store that can remove a secret with all its versions
// (Secrets Manager: at once, without a recovery window): how the claims a
// rotation or a re-issue agreed on a new key in are removed once that key
// is current, so no copy of it outlives its use. Removing a secret that
// does not exist is not an error.
type Remover interface {
	Remove(ctx context.Context, name string) error
}

// Lister is a store that can list the secrets of one folder: the names
// dir+"/"+NAME, NAME without a "/", each with when the store created it
// and when its current value last changed.
// It returns metadata only, never a value; how the re-issue records a
// prune may remove are found (certs.PruneReissueRecords). A store that
// cannot say when a secret was created leaves Created zero.
type Lister interface {
	List(ctx context.Context, dir string) ([]Listed, error)
}

// Listed is one secret a Lister found.
type Listed struct {
	Name    string
	Created time.Time // when the store created the secret (zero: unknown)
	// Changed is when the secret last changed (a new current version, or
	// in Secrets Manager any change: a label moved, a tag); never before
	// Created; zero: unknown.
	Changed time.Time
}

// Secret is one secret to create.
type Secret struct {
	Name        string
	Value       string
	Description string
	Tags        map[string]string
}

// Sentinels callers branch on; implementations wrap them.
var (
	ErrExist    = fs.ErrExist
	ErrNotExist = fs.ErrNotExist
	// ErrTemporary: the store could not answer this time (throttling, a
	// 5xx, a reset or cut-short answer) after the client's own retries; the
	// same call may succeed later. Callers re-read before retrying a write:
	// it may have succeeded, or a concurrent writer may have done the work.
	ErrTemporary = errors.New("temporary")
	// ErrThrottled is the ErrTemporary of a rate quota.
	ErrThrottled = Kind("throttled", ErrTemporary)
	// ErrAccessDenied: the caller's permissions do not allow the call.
	ErrAccessDenied = errors.New("access denied")
)

// Kind is a sentinel error with its own text that is also parent for
// errors.Is: a finer cause within a coarser class.
func Kind(text string, parent error) error { return &kind{text, parent} }

type kind struct {
	text   string
	parent error
}

func (k *kind) Error() string { return k.text }
func (k *kind) Unwrap() error { return k.parent }

// Secrets Manager allows letters, digits and /_+=.@- in names; we also refuse
// empty path segments and "..", which would escape a directory store.
var prefixRE = regexp.MustCompile(`^[A-Za-z0-9_+=.@-]+(/[A-Za-z0-9_+=.@-]+)*$`)

// ValidatePrefix checks a secret prefix before any call is made.
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return fmt.Errorf("the secret prefix is empty: set SECRETS_PREFIX (default joblet)")
	}
	if len(prefix) > 400 || !prefixRE.MatchString(prefix) {
		return fmt.Errorf("invalid secret prefix %q: use letters, digits and /_+=.@- separated by single slashes, no leading or trailing slash", prefix)
	}
	for _, seg := range strings.Split(prefix, "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("invalid secret prefix %q: %q is not allowed as a path segment", prefix, seg)
		}
	}
	return nil
}

// ValueVersions identifies values by their SHA-256, for stores where
// reading a value is as cheap as asking for its version.
func ValueVersions(vals map[string]string) map[string]string {
	out := make(map[string]string, len(vals))
	for n, v := range vals {
		sum := sha256.Sum256([]byte(v))
		out[n] = hex.EncodeToString(sum[:])
	}
	return out
}

// Version is one stored version of a secret.
type Version struct {
	Value   string
	Created time.Time // when the store created this version
}

// Historian is a Store that keeps a secret's older versions beyond the
// previous one (Secrets Manager keeps up to about 100, deprecated ones
// included). Someone who can write a secret can put an older value back
// as often as they like, so the previous version alone cannot tell a
// rollback: a signer that must never sign from an older state than it
// signed before walks the history.
type Historian interface {
	// History calls visit with each version of name the store still
	// holds, the newest created first, until visit returns false. A
	// missing secret has no versions.
	History(ctx context.Context, name string, visit func(Version) bool) error
}

// Anchored is a Store that can read a set of secrets anchored by its first:
// a set that means nothing without that one (a fleet without its root
// certificate has nothing a node can join).
type Anchored interface {
	// GetAnchored is Get, except where the store cannot read the names in
	// one call and reads them one by one (Secrets Manager's batch read
	// throttled or denied): it reads names[0] first and, when that one is
	// missing, stops there and returns an empty map, whatever else exists.
	// A burst of nodes finding an empty store then spends one read each,
	// not one per name.
	GetAnchored(ctx context.Context, names []string) (map[string]string, error)
}

// Rotation is how a store rotates a secret on its own schedule (Secrets
// Manager's rotation, with a rotation function).
type Rotation struct {
	Enabled  bool   `json:"enabled"`
	Function string `json:"function,omitempty"`
	// Schedule is the rule: a schedule expression, or "every N days".
	Schedule     string     `json:"schedule,omitempty"`
	LastRotated  *time.Time `json:"lastRotated,omitempty"`
	NextRotation *time.Time `json:"nextRotation,omitempty"`
	// Pending: the id of a version labelled AWSPENDING (RotationPending) that is not
	// current, a rotation started and not finished (a failed step, which
	// Secrets Manager retries).
	Pending string `json:"pending,omitempty"`
}

// RotationReader is a store that can say how it rotates a secret.
type RotationReader interface {
	Rotation(ctx context.Context, name string) (Rotation, error)
}
