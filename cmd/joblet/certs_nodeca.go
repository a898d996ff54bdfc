package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

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
one (the command prints the serial). See docs/OPERATIONS.md.`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	sf := addStoreFlags(fs, withDirStore|withCreate|withReplicas)
	var asJSON, rekey bool
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	fs.BoolVar(&rekey, "rekey", false, "give the node-issuing CA a new key (after a node was stolen), then revoke the old one once nodes renewed")
	pf := addPushFlags(fs)
	cmd.RunE = func(*cobra.Command, []string) error {
		ctx, cancel := sf.context()
		defer cancel()
		fl, err := sf.openFleet(ctx, config.Home(), c.log)
		if err != nil {
			return err
		}
		nodeCA := fl.NodeCA
		if rekey {
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
			fmt.Fprintf(c.stdout, "🔑 node-issuing CA re-keyed (serial %s, expires %s); it replaces serial %s\n", res.NodeCA.Serial, pki.ExpiryText(res.NodeCA.NotAfter, time.Now()), res.Replaced.Serial)
		case certs.StepNodeCAReissued:
			fmt.Fprintf(c.stdout, "🔏 node-issuing CA re-issued from the current root (serial %s, expires %s)\n", res.NodeCA.Serial, pki.ExpiryText(res.NodeCA.NotAfter, time.Now()))
		}
		fmt.Fprintln(c.stdout, "next:", res.Next)
		return nil
	}
	return cmd
}
