package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/nodedir"
	"github.com/ehsaniara/joblet/internal/push"
)

// pushFlags are the flags of a command that pushes the new CRL to the
// fleet's nodes after writing it (internal/push).
type pushFlags struct {
	nodes, rnxCfg string
}

func addPushFlags(fs *pflag.FlagSet) *pushFlags {
	p := &pushFlags{}
	fs.StringVar(&p.nodes, "nodes", os.Getenv(nodedir.Env), "the node directory's list (docs/JOBS.md): HOST:PORT or NODE_ID=HOST:PORT, comma-separated; each node is handed the new CRL at once (env JOBLET_NODES)")
	fs.StringVar(&p.rnxCfg, "rnx-config", filepath.Join(config.Home(), "config", "rnx-config.yml"), "with --nodes: the operator rnx config whose client certificate dials the nodes")
	return p
}

// pushTimeout bounds the whole push; each node has its own shorter bound.
const pushTimeout = 30 * time.Second

// pushCRL hands the store's CRL (and signed trust state) to every node of
// --nodes and reports it on stdout (what then). nil without --nodes. The
// store write already happened: nothing here fails the command, a node
// missed takes them from rnx or at its next refresh.
func (c *cli) pushCRL(fl *certs.Fleet, p *pushFlags, quietText bool) *push.Report {
	return c.pushState(fl, p, quietText, "the new CRL")
}

// pushState is pushCRL for any command that changed trust; what names it.
func (c *cli) pushState(fl *certs.Fleet, p *pushFlags, quietText bool, what string) *push.Report {
	if p.nodes == "" {
		if !quietText {
			fmt.Fprintf(c.stdout, "   nodes take %s after their next refresh (open connections too), once an rnx holding it calls them, or at once after `systemctl reload joblet` on each; pass --nodes (or JOBLET_NODES) to push it to them now\n", what)
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), pushTimeout)
	defer cancel()
	warn := func(err error) *push.Report {
		fmt.Fprintf(c.stderr, "joblet: warning: %s was written but not pushed to the nodes: %v; they take it at their next refresh\n", what, err)
		return nil
	}
	dir, err := nodedir.FromList(p.nodes)
	if err != nil {
		return warn(fmt.Errorf("--nodes: %w", err))
	}
	cfg, err := config.LoadRnx(p.rnxCfg)
	if err != nil {
		return warn(fmt.Errorf("pushing needs an operator rnx config (--rnx-config): %w", err))
	}
	crl, trust, err := fl.StoredState(ctx)
	if err != nil {
		return warn(err)
	}
	start := time.Now()
	r := push.Offer(ctx, dir, cfg, "", crl, trust)
	if !quietText {
		fmt.Fprintf(c.stdout, "%s (%s)\n", r.Text(what), time.Since(start).Round(time.Millisecond))
	}
	return &r
}
