package certs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// The root's rotation by Secrets Manager. One RotateSecret of
// <prefix>/ca-key runs its four steps in seconds, and a root rotation
// needs days (every node trusts the new root before it signs anything
// they check; every client refreshes once before the old root goes), so
// one run makes one step of the staged contract (`rotate-ca`), the step
// the fleet's phase calls for, and only when the fleet is ready for it:
//
//	stable    -> begin     the new root and its cross certificate (always ready)
//	begun     -> promote   when every node of the directory trusts the new root
//	promoted  -> finish    when every node serves from the new root and none saw
//	                       a client certificate of the old one within the window
//
// A run that finds the fleet not ready fails in createSecret (ErrNotReady)
// once its version names its step, and changes nothing else: Secrets
// Manager keeps AWSPENDING on that version and retries the run with the
// same token, which makes that step once the fleet is ready, and is
// refused if the fleet moved on another way meanwhile (an abort by hand). The staged versions themselves carry JOBLET_PENDING
// (secretstore.Pending), never AWSPENDING, so a begun rotation does not
// read as one of Secrets Manager's in progress.

// RootRun is what one Secrets Manager run on the root's key does.
type RootRun string

const (
	RootRunBegin   RootRun = "begin"
	RootRunPromote RootRun = "promote"
	RootRunFinish  RootRun = "finish"
)

// rootRunHead starts the value of a run's version: the run, then the key
// of the root that is current once the run is done (PEM readers skip text
// before a block). The version is never made current: it names the run so
// that its later steps, and a retry, do the same one.
const rootRunHead = "joblet root rotation run: "

// RootRunNodes is how a scheduled root rotation asks the fleet's nodes
// what `rotate-ca status --nodes` asks them (the node directory, with a
// client certificate of the fleet). Without it, promote and finish runs
// refuse: they cannot know the fleet is ready.
type RootRunNodes struct {
	Addresses []string
	Info      NodeInfo
	// ClientWindow: a node that verified a client certificate of the
	// outgoing root this recently holds a finish back.
	ClientWindow time.Duration
}

// ErrNotReady: the fleet is not ready for the run's step yet; nothing but
// the run's version was written, and the same run later goes ahead.
var ErrNotReady = errors.New("the fleet is not ready for this step of the root's rotation")

// rotateRootStep is RotateSecretStep for <prefix>/ca-key (see the table
// above):
//
//   - createSecret: when version token holds a run (a step run again, a
//     run retried), its checks again, as testSecret's (ErrNotReady, or
//     refused when the fleet moved on). Else the phase chooses the run,
//     version token gets the run's name and the key of the root current
//     after it: the new root's for begin (claimed in the create-only
//     rotation record: every run gets the same one) and promote, the
//     current one's for finish; AWSPENDING. Then its readiness is checked
//     (ErrNotReady).
//   - setSecret: nothing.
//   - testSecret: the run is still the fleet's next step (or done), its key
//     is the root it names (the record's, cross-signed by the current root,
//     for begin), and the fleet is still ready.
//   - finishSecret: testSecret's checks, the step (BeginRotation,
//     PromoteRotation, FinishRotation: each idempotent), then AWSPENDING
//     off version token, which is never made current.
//
// A finishSecret that finds its step already done (a retry, or an
// operator who ran it by hand) only takes AWSPENDING off.
func (f *Fleet) rotateRootStep(ctx context.Context, vs VersionStore, res *RotationResult) (*RotationResult, error) {
	n := f.names()
	name, token := n.CAKey(), res.Token
	return runSecretStep(ctx, vs, res, secretSteps{
		name:  name,
		holds: "run",
		again: func(value string) (*RotationResult, error) {
			// A retry is the run it was (a run that waited names its step
			// first): it waits again, or is refused on a fleet that moved
			// another way meanwhile (an abort by hand), never made into
			// the step the fleet's phase now calls for.
			if labels, err := vs.Stages(ctx, name); err != nil {
				return nil, err
			} else if labels[secretstore.RotationPending] != token {
				res.Done = "version " + token + " holds a run that ended: nothing to do"
				return res, nil
			}
			run, keyPEM, err := parseRootRun(value, name, token)
			if err != nil {
				return nil, err
			}
			if _, err := f.rootRunChecked(ctx, run, keyPEM); err != nil {
				return nil, err
			}
			res.Done = "version " + token + " holds the run " + string(run) + " already: nothing to do"
			return res, nil
		},
		create: func() (*RotationResult, error) {
			r, err := f.readRotation(ctx)
			if err != nil {
				return nil, err
			}
			if err := rootInStore(r, n); err != nil {
				return nil, err
			}
			run, key, err := f.nextRootRun(ctx, r)
			if err != nil {
				return nil, err
			}
			keyPEM, err := pki.EncodeKey(key.Key)
			if err != nil {
				return nil, err
			}
			// The run is named before the fleet is asked: a run that waits is
			// retried with this token, and the retry must make this step or
			// none (the fleet's phase may change meanwhile).
			if err := vs.PutVersion(ctx, name, token, rootRunHead+string(run)+"\n"+string(keyPEM), secretstore.RotationPending); err != nil {
				return wroteFirst(res, err)
			}
			if err := f.rootRunReady(ctx, run); err != nil {
				return nil, err
			}
			info := infoOf(key.Cert)
			res.Issued, res.Done = &info, "the root's rotation runs "+string(run)+" (root serial "+info.Serial+"); version "+token+" names it (AWSPENDING, never current)"
			return res, nil
		},
		set: "nothing: the run's step is made in finishSecret",
		check: func(value string) (*RotationResult, error) {
			if res.Step == RotationTest && !strings.HasPrefix(value, rootRunHead) {
				// Secrets Manager testing the function when a schedule is set
				// without rotating now: a pending copy of the current key.
				cur, err := f.Store.Get(ctx, []string{name})
				if err != nil {
					return nil, err
				}
				if cur[name] != "" && cur[name] == value {
					res.Done = "a copy of the current root key: the function reads it; runs make the rotation's steps"
					return res, nil
				}
			}
			run, keyPEM, err := parseRootRun(value, name, token)
			if err != nil {
				return nil, err
			}
			// A run is under way while its version holds AWSPENDING; one that
			// ended is never made again (a step invoked by hand, later).
			if labels, err := vs.Stages(ctx, name); err != nil {
				return nil, err
			} else if labels[secretstore.RotationPending] != token {
				res.Done = "the root's rotation run " + string(run) + " of version " + token + " ended already: nothing to do"
				return res, nil
			}
			done, err := f.rootRunChecked(ctx, run, keyPEM)
			if err != nil {
				return nil, err
			}
			if res.Step == RotationTest {
				res.Done = "the root's rotation run " + string(run) + " is the fleet's next step and the fleet is ready for it"
				if done {
					res.Done = "the root's rotation run " + string(run) + " is done already"
				}
				return res, nil
			}
			var st *RotationStatus
			if !done {
				switch run {
				case RootRunBegin:
					st, err = f.BeginRotation(ctx, CAKeyRef{})
				case RootRunPromote:
					st, err = f.PromoteRotation(ctx)
				case RootRunFinish:
					st, err = f.FinishRotation(ctx)
				}
				if err != nil {
					return nil, err
				}
			}
			// AWSPENDING off, last: until the step is made the version keeps
			// it, and Secrets Manager's retry completes the run.
			if err := vs.MoveStage(ctx, name, secretstore.RotationPending, ""); err != nil {
				return nil, err
			}
			res.Done = "the root's rotation run " + string(run) + " is done"
			if st != nil {
				res.Done += "; the fleet is " + string(st.Phase) + ": " + nextRootRun(st.Phase)
				info := st.Current
				res.Issued = &info
			}
			return res, nil
		},
	})
}

// rootRunChecked is a run's checks against the fleet, as a retried
// createSecret and testSecret and finishSecret make them: the run is
// still the fleet's next step or done (rootRunState), and one not done
// finds the fleet ready for it (rootRunReady).
func (f *Fleet) rootRunChecked(ctx context.Context, run RootRun, keyPEM string) (done bool, err error) {
	r, err := f.readRotation(ctx)
	if err != nil {
		return false, err
	}
	done, err = f.rootRunState(ctx, r, run, keyPEM)
	if err != nil {
		return false, err
	}
	if !done {
		if err := f.rootRunReady(ctx, run); err != nil {
			return false, err
		}
	}
	return done, nil
}

// nextRootRun says what the next scheduled run does in phase p.
func nextRootRun(p Phase) string {
	switch p {
	case PhaseBegun:
		return "the next run promotes the new root once every node trusts it"
	case PhasePromoted:
		return "the next run retires the old root once every node serves from the new one and no client presents the old one's certificates"
	}
	return "the next run begins the next rotation"
}

// rootInStore refuses a root whose key is in AWS KMS: its rotation needs a
// new KMS key, which the function does not create.
func rootInStore(r *rotation, n Names) error {
	if _, kms := r.current.Key.(KMSKey); kms {
		return fmt.Errorf("%w: this fleet's root key is in AWS KMS (%s), and a scheduled rotation would need a new KMS key each time: rotate it by hand (`joblet certs rotate-ca begin --ca-kms-key-id NEW_KEY`), and take %s off the rotation schedule (`aws secretsmanager cancel-rotate-secret`)",
			ErrUsage, keyPlace(r.current, n), n.CAKey())
	}
	return nil
}

// nextRootRun is the run the fleet's phase calls for, and the root current
// after it.
func (f *Fleet) nextRootRun(ctx context.Context, r *rotation) (RootRun, *pki.CA, error) {
	switch {
	case r.interrupted:
		// A begin stopped between its writes: the begin run completes it.
		if r.pending == nil {
			return "", nil, fmt.Errorf("%w: a `rotate-ca begin` was interrupted and its pending CA cannot be read: run `joblet certs rotate-ca begin` by hand", ErrInconsistentStore)
		}
		return RootRunBegin, r.pending, nil
	case r.phase == PhaseStable:
		next, err := f.claimNext(ctx, r.n, r.current, CAKeyRef{})
		if err != nil {
			return "", nil, err
		}
		// An abort by hand is an operator's decision: the record still
		// names the root it dropped (its cross certificate revoked), and a
		// run that began it again (a waiting run's retry, the next
		// schedule) would cross-sign that root again.
		if c := r.cross; c != nil && pki.IsCrossOf(c, next.Cert, r.current.Cert) && r.revoked[c.SerialNumber.Text(16)] {
			rec := r.n.Rotation(r.current.Cert.SerialNumber.Text(16))
			return "", nil, fmt.Errorf("%w: the root the rotation record %s names (%s) was dropped by a `rotate-ca abort` (its cross certificate, serial %s, is revoked), and a scheduled run does not bring it back. For a new root, delete the record (`aws secretsmanager delete-secret --secret-id %s --force-delete-without-recovery`): the next run begins with a new one. To resume the dropped one, run `joblet certs rotate-ca begin` by hand",
				ErrUsage, rec, pki.Fingerprint(next.Cert), pki.SerialHex(c.SerialNumber), rec)
		}
		return RootRunBegin, next, nil
	case r.phase == PhaseBegun:
		if r.pending == nil {
			return "", nil, fmt.Errorf("%w: the fleet's rotation is begun but its pending CA cannot be read: see `joblet certs rotate-ca status`", ErrInconsistentStore)
		}
		return RootRunPromote, r.pending, nil
	default:
		return RootRunFinish, r.current, nil
	}
}

// rootRunState checks a run's version against the fleet: done when the
// fleet is past the run's step with the run's root current (or pending,
// after a begin); an error when the run is not the fleet's next step (the
// fleet moved on another way: an abort, say), so that nothing is done on
// a state the run was not made for.
func (f *Fleet) rootRunState(ctx context.Context, r *rotation, run RootRun, keyPEM string) (done bool, err error) {
	key, err := pki.ParseKey([]byte(keyPEM))
	if err != nil {
		return false, fmt.Errorf("%w: the run's version of %s holds no usable key: %v", ErrInconsistentStore, r.n.CAKey(), err)
	}
	holds := func(ca *pki.CA) bool { return ca != nil && pki.MatchesKey(ca.Cert, key) == nil }
	next, nextKey, err := f.nextRootRun(ctx, r)
	if err != nil {
		return false, err
	}
	switch {
	case run == next && holds(nextKey):
		return false, nil
	case run == RootRunBegin && r.phase == PhaseBegun && holds(r.pending),
		run == RootRunPromote && r.phase == PhasePromoted && holds(r.current),
		run == RootRunFinish && r.phase == PhaseStable && holds(r.current):
		return true, nil
	}
	return false, fmt.Errorf("%w: this run (%s) is not the fleet's next step any more, or names another root than the fleet's: the fleet is %s (`rotate-ca status`). Take AWSPENDING off its version (`aws secretsmanager update-secret-version-stage --secret-id %s --version-stage AWSPENDING --remove-from-version-id VERSION`), and the next scheduled run takes the fleet from there",
		ErrUsage, run, r.phase, r.n.CAKey())
}

// rootRunReady is the run's precondition, what `rotate-ca status --nodes`
// and finish's gate check: begin needs nothing; promote needs every node
// of the directory to trust the pending root; finish, every node to serve
// from the current root and none to have seen a client certificate of the
// outgoing one within the window. A node that does not answer holds the
// run back: it may be the one not ready.
func (f *Fleet) rootRunReady(ctx context.Context, run RootRun) error {
	if run == RootRunBegin {
		return nil
	}
	nodes := f.RootRunNodes
	if nodes == nil || len(nodes.Addresses) == 0 || nodes.Info == nil {
		return fmt.Errorf("%w: a scheduled %s asks every node first, and the function has no node directory: set JOBLET_NODES in its environment (the nodes' addresses, reachable from it), or run `joblet certs rotate-ca %s --nodes ...` by hand", ErrNotReady, run, run)
	}
	st, err := f.RotationStatus(ctx)
	if err != nil {
		return err
	}
	reps := ProbeRotation(ctx, nodes.Addresses, st, nodes.Info, f.Now().Add(-nodes.ClientWindow))
	var behind, silent []string
	for _, rep := range reps {
		switch {
		case rep.IssuerSHA256 == "" && !rep.Current:
			silent = append(silent, rep.Address+" ("+rep.Summary+")")
		case run == RootRunPromote && (rep.TrustsPendingCA == nil || !*rep.TrustsPendingCA):
			behind = append(behind, rep.Address+" ("+rep.Summary+")")
		}
	}
	if len(behind)+len(silent) > 0 {
		var why []string
		if len(silent) > 0 {
			why = append(why, fmt.Sprintf("%d of %d nodes do not answer: %s. Each node of JOBLET_NODES must answer before a %s (it may be the one not ready): take a node that is gone out of JOBLET_NODES", len(silent), len(reps), strings.Join(silent, "; "), run))
		}
		if len(behind) > 0 {
			why = append(why, fmt.Sprintf("%d of %d nodes: %s. Nodes take the new trust at their next refresh, or at once from `joblet certs push`", len(behind), len(reps), strings.Join(behind, "; ")))
		}
		return fmt.Errorf("%w: %s. The run is retried with the same token", ErrNotReady, strings.Join(why, ". "))
	}
	if run == RootRunFinish {
		if _, refused := FinishGate(reps); refused != nil {
			return fmt.Errorf("%w: %v. (For a scheduled run, JOBLET_CLIENT_WINDOW is --client-window, now %s; the function's own questions during the promote run count as the old root's clients for that long after it. The run is retried with the same token; `joblet certs rotate-ca finish --force` by hand does not wait.)", ErrNotReady, refused, nodes.ClientWindow)
		}
	}
	return nil
}

// parseRootRun reads a run's version: its run and the key PEM.
func parseRootRun(value, name, token string) (RootRun, string, error) {
	head, keyPEM, _ := strings.Cut(value, "\n")
	run := RootRun(strings.TrimPrefix(head, rootRunHead))
	if !strings.HasPrefix(head, rootRunHead) || (run != RootRunBegin && run != RootRunPromote && run != RootRunFinish) {
		return "", "", fmt.Errorf("%w: version %s of %s does not name a run of the root's rotation (it starts %q): it was not written by this function's createSecret, and no run of it does anything. If no operator wrote it, someone without the root key did; end the run, so that Secrets Manager's schedule goes on: `aws secretsmanager update-secret-version-stage --secret-id %s --version-stage AWSPENDING --remove-from-version-id %s`",
			ErrInconsistentStore, token, name, head, name, token)
	}
	return run, keyPEM, nil
}
