package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
)

// Reload re-reads the config file and swaps in its TLS material: new
// handshakes use it at once, established connections keep theirs. An
// invalid file is logged and ignored: the node keeps serving what it has.
func (s *Server) Reload() error {
	if s.opts.ConfigPath == "" {
		return nil
	}
	// A config that became writable by others is not reloaded: whoever
	// could write it could have made this node trust their CA.
	if err := config.CheckServerConfig(s.opts.ConfigPath); err != nil {
		return fmt.Errorf("reload: %w (still serving the previous certificates)", err)
	}
	cfg, err := config.LoadServer(s.opts.ConfigPath)
	if err != nil {
		return fmt.Errorf("reload: %w (still serving the previous certificates)", err)
	}
	if err := config.CheckStore(cfg.Store); err != nil {
		return fmt.Errorf("reload: %w (still serving the previous certificates)", err)
	}
	creds, err := CredentialsFromConfig(cfg.Security)
	if err != nil {
		return fmt.Errorf("reload %s: %w (still serving the previous certificates)", s.opts.ConfigPath, err)
	}
	old := s.tls.cur.Load()
	// A newer trust state alone (a node-ca re-key's) counts too: the node
	// tells clients its version, and one still telling the old would be
	// handed the new one by every client that holds it.
	if old.Leaf.Equal(creds.Leaf) && old.CAPEM == creds.CAPEM && (old.MinCRL == nil) == (creds.MinCRL == nil) &&
		(old.MinCRL == nil || old.MinCRL.Cmp(creds.MinCRL) == 0) && old.trustRaw == creds.trustRaw && old.personsRaw == creds.personsRaw {
		return nil
	}
	if gap := creds.CRLGap(); gap != "" {
		s.log.Error("refusing every call", "reason", gap)
	}
	s.tls.set(creds)
	s.log.Info("TLS credentials reloaded",
		"serverCertSerial", pki.SerialHex(creds.Leaf.SerialNumber), "previousSerial", pki.SerialHex(old.Leaf.SerialNumber),
		"notAfter", creds.Leaf.NotAfter, "trustedCAs", creds.CACount, "trustChanged", old.CAPEM != creds.CAPEM)
	return nil
}

// fileStamp identifies a version of the config file; a rename (atomic
// write) changes it even when size and time happen to match.
func fileStamp(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	h := sha256.New()
	fmt.Fprint(h, fi.ModTime().UnixNano(), fi.Size())
	if b, err := os.ReadFile(path); err == nil {
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Run keeps the node's TLS material current until ctx ends: it watches the
// config file, and with a Refresh function refreshes from the store every
// RefreshInterval, retrying with backoff (from 1s up to the interval) while
// the store cannot be reached. A certificate that expired while the store
// was away is renewed as soon as it is back.
func (s *Server) Run(ctx context.Context) {
	if s.opts.ConfigPath != "" {
		go s.watchFile(ctx)
	}
	if s.opts.Refresh == nil {
		return
	}
	go func() {
		wait := time.Duration(0)
		backoff := time.Second
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			case <-s.refreshNow:
			}
			s.state <- struct{}{}
			changed, err := s.opts.Refresh(ctx)
			if err == nil && changed {
				if rerr := s.Reload(); rerr != nil {
					s.log.Error("reload after refresh", "err", rerr)
				}
			}
			<-s.state
			if err != nil {
				s.log.Warn("refresh from the store failed; retrying", "in", backoff, "err", err)
				wait = backoff
				backoff = min(backoff*2, s.opts.RefreshInterval)
				continue
			}
			backoff = time.Second
			wait = jittered(s.opts.RefreshInterval)
		}
	}()
}

// jittered spreads a fleet's refreshes: nodes started together (an
// auto-scaling group) would otherwise poll the store in lockstep, in bursts
// that hit its rate quota. Within ±10% of d: a change reaches every node
// within 1.1 intervals.
func jittered(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	spread := int64(d) / 5
	if spread <= 0 {
		return d
	}
	return d - time.Duration(spread/2) + time.Duration(rand.Int64N(spread+1))
}

// RefreshNow asks the refresh loop to run at once (SIGHUP).
func (s *Server) RefreshNow() {
	select {
	case s.refreshNow <- struct{}{}:
	default:
	}
}

func (s *Server) watchFile(ctx context.Context) {
	poll := s.opts.FilePoll
	if poll == 0 {
		poll = time.Second
	}
	last := fileStamp(s.opts.ConfigPath)
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if cur := fileStamp(s.opts.ConfigPath); cur != "" && cur != last {
			last = cur
			if err := s.Reload(); err != nil {
				s.log.Error("config file changed but cannot be loaded", "err", err)
			}
		}
	}
}
