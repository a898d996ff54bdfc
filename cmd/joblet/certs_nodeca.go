package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/push"
)

func (c *cli) nodeCACmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node-ca [--json]",
		Short: "move the fleet to split issuing power: nodes sign with a node-issuing CA, not the root (one step per run)",
		Long: `Moves a fleet to split issuing power, one step per run, with the operator's
permissions (the root's key; iam-policy --for rotation):

  1. A root made before node-issuing CAs allows no CA under it: it is re-issued
     for the same key and name (everything it signed stays valid). Every client
     config then needs one ` + "`rnx config refresh`" + ` before step 2.
  2. The node-issuing CA is created. Nodes renew from it on their next refresh;
     ` + "`joblet certs status`" + ` on a node says whether it still serves a
     certificate signed by the root. Then tighten the node policy
     (` + "`joblet certs iam-policy --for node`" + `).

Re-running when all is done changes nothing. After a node was stolen,
--rekey gives the node-issuing CA a new key; once nodes renewed, revoke the old
one (the command prints the serial).

The node-issuing CA lives 14 days (--node-ca-lifetime at init) and may sign server
certificates only for the fleet's names (its name constraints: private address
ranges, loopback, localhost, joblet, .internal, the balancer's name given at
` + "`certs init`" + `). --permit-server-names widens them (a re-issue for the same
key; with --rekey, a new key); a re-issue always keeps those it has.

Scheduled: ` + "`joblet certs node-ca --rekey --if-due`" + ` (daily) gives it a new key
when half its lifetime has passed, and otherwise says "nothing to do" and exits
0; a run interrupted between its writes is completed by the next. Nodes
move to the new one on their next refresh; clients trust the root and need
nothing. See docs/OPERATIONS.md.

The root certifies only a node-issuing key the signed trust state already
lists (the one nodes use) or one this command makes: a key found in
<prefix>/node-ca-key that the state does not list (written without the root
key) is replaced by a new one, and the command says so.`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	sf := addStoreFlags(fs, withDirStore|withCreate|withReplicas)
	var asJSON, rekey, ifDue bool
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	fs.BoolVar(&rekey, "rekey", false, "give the node-issuing CA a new key (after a node was stolen), then revoke the old one once nodes renewed")
	pf := addPushFlags(fs)
	fs.BoolVar(&ifDue, "if-due", false, "with --rekey, the scheduled run (daily): a new key only when the node-issuing CA is due (half its lifetime passed), else \"nothing to do\", exit 0")
	ncf := addNodeCAFlags(fs)
	cmd.RunE = func(*cobra.Command, []string) error {
		ctx, cancel := sf.context()
		defer cancel()
		fl, err := sf.openFleet(ctx, config.Home(), c.log)
		if err != nil {
			return err
		}
		if err := ncf.apply(fl); err != nil {
			return err
		}
		nodeCA := fl.NodeCA
		switch {
		case ifDue:
			// --if-due alone means the same: there is nothing else it
			// could mean.
			nodeCA = fl.RekeyNodeCAIfDue
		case rekey:
			nodeCA = fl.RekeyNodeCA
		}
		res, err := nodeCA(ctx)
		if err != nil {
			return err
		}
		if asJSON {
			if res.Step != certs.StepNothing && pf.nodes != "" {
				return printJSON(c.stdout, struct {
					*certs.NodeCAResult
					Push *push.Report `json:"push"`
				}{res, c.pushState(fl, pf, true, "the new trust state")})
			}
			return printJSON(c.stdout, res)
		}
		defer func() {
			if res.Step != certs.StepNothing {
				c.pushState(fl, pf, false, "the new trust state")
			}
		}()
		switch res.Step {
		case certs.StepRootReissued:
			fmt.Fprintf(c.stdout, "🔏 step 1 of 2: the root CA was re-issued for the same key so a CA may sit under it (serial %s, sha256 %s)\n", res.Root.Serial, res.Root.Fingerprint)
		case certs.StepNodeCACreated:
			fmt.Fprintf(c.stdout, "🔏 step 2 of 2: node-issuing CA created in %s (serial %s, expires %s)\n", fl.StoreDesc, res.NodeCA.Serial, pki.ExpiryText(res.NodeCA.NotAfter, time.Now()))
		case certs.StepNodeCARekeyed:
			replaces := ""
			if res.Replaced != nil {
				replaces = "; it replaces serial " + res.Replaced.Serial
			}
			fmt.Fprintf(c.stdout, "🔑 node-issuing CA re-keyed (serial %s, expires %s)%s\n", res.NodeCA.Serial, pki.ExpiryText(res.NodeCA.NotAfter, time.Now()), replaces)
		case certs.StepNodeCAWidened:
			fmt.Fprintf(c.stdout, "🔏 node-issuing CA re-issued for the same key with the names added (serial %s, expires %s)\n", res.NodeCA.Serial, pki.ExpiryText(res.NodeCA.NotAfter, time.Now()))
		case certs.StepNodeCAReissued:
			fmt.Fprintf(c.stdout, "🔏 node-issuing CA re-issued from the current root (serial %s, expires %s)\n", res.NodeCA.Serial, pki.ExpiryText(res.NodeCA.NotAfter, time.Now()))
		}
		if res.Reason != "" && res.Step != certs.StepNothing {
			fmt.Fprintf(c.stdout, "   why: %s\n", res.Reason)
		}
		if len(res.Permitted) > 0 {
			fmt.Fprintf(c.stdout, "   it may sign server certificates for %s\n", strings.Join(res.Permitted, ", "))
		}
		if res.Step == certs.StepNothing {
			fmt.Fprintln(c.stdout, res.Next)
			return nil
		}
		fmt.Fprintln(c.stdout, "next:", res.Next)
		return nil
	}
	return cmd
}

// nodeCAFlags are what a node-issuing CA made or re-issued by a command
// may sign for, and how long it lives.
type nodeCAFlags struct {
	permit, life string
}

func addNodeCAFlags(fs *pflag.FlagSet) *nodeCAFlags {
	f := &nodeCAFlags{}
	fs.StringVar(&f.permit, "permit-server-names", config.EnvOr("JOBLET_PERMIT_SERVER_NAMES", ""), "comma list of DNS names (each permits the names under it too; *.example.com only those), IP addresses and CIDR ranges the node-issuing CA may sign server certificates for, besides the defaults (private ranges, loopback, localhost, joblet, .internal) and those it already permits (env JOBLET_PERMIT_SERVER_NAMES)")
	fs.StringVar(&f.life, "node-ca-lifetime", "", "lifetime of a node-issuing CA key made now (a new fleet, --rekey), at most 90d (default: a re-key keeps the lifetime of the one it replaces; a new fleet's lives 14d); a scheduled --rekey --if-due re-keys it at half. A re-issue for the same key keeps its window")
	return f
}

// apply sets them on fl.
func (f *nodeCAFlags) apply(fl *certs.Fleet) error {
	nc, err := pki.ParseNameConstraints(pki.SplitList(f.permit))
	if err != nil {
		return usagef("--permit-server-names: %v", err)
	}
	fl.PermitNames = nc
	if f.life == "" {
		return nil
	}
	life, err := parseLifetime("node-ca-lifetime", f.life)
	if err != nil {
		return err
	}
	if life > pki.MaxNodeCALifetime {
		return usagef("--node-ca-lifetime %s: at most %dd (its key is on every node: the lifetime bounds a stolen copy)", f.life, int(pki.MaxNodeCALifetime.Hours()/24))
	}
	fl.NodeCALifetime = life
	return nil
}
