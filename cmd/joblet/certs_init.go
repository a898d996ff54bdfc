package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
)

func (c *cli) initCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "init --address HOST:PORT [--out DIR]",
		Short: "create the fleet in the store from an operator's machine and write the client configs (nodes then only join)",
		Long: `Creates the fleet's CA, node-issuing CA and role certificates in the store
(or completes, or reads, the ones there), with the operator's permissions
(iam-policy --for bootstrap), and writes rnx-config.yml (every role) and
rnx-config-<role>.yml into --out. No server certificate is issued: nodes
join with ` + "`joblet certs bootstrap`" + ` under the node policy and hold only their
own key. An existing client config with other content is refused, never
overwritten.

The node-issuing CA may sign server certificates only for the fleet's names:
the private address ranges, loopback, localhost, joblet, the .internal suffix
and --address's host (the balancer's name). A node joining with another name is
refused; --permit-server-names adds names (later: ` + "`joblet certs node-ca`" + `
--permit-server-names).`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	sf := addStoreFlags(fs, withDirStore|withCreate|withReplicas|withCAKMS)
	var out, address, keyType, caLife, clientLife string
	var asJSON bool
	fs.StringVar(&out, "out", "joblet-configs", "directory for the client configs (not a node's config directory: a node needs no role key)")
	fs.StringVar(&address, "address", config.EnvOr("JOBLET_PUBLIC_ADDRESS", ""), "HOST:PORT the client configs point at: the fleet's load balancer, or a node (env JOBLET_PUBLIC_ADDRESS)")
	addKeyTypeFlag(fs, &keyType, "key type of new keys")
	fs.StringVar(&caLife, "ca-lifetime", "1095d", "CA lifetime (days with d, or a duration)")
	fs.StringVar(&clientLife, "client-lifetime", "730d", "client certificate lifetime")
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	ncf := addNodeCAFlags(fs)
	cmd.RunE = func(*cobra.Command, []string) error {
		if address == "" {
			return usagef("--address is required: HOST:PORT of the fleet's load balancer or of a node")
		}
		kt, err := parseKeyType(keyType)
		if err != nil {
			return err
		}
		caLifetime, err := parseLifetime("ca-lifetime", caLife)
		if err != nil {
			return err
		}
		clientLifetime, err := parseLifetime("client-lifetime", clientLife)
		if err != nil {
			return err
		}
		ctx, cancel := sf.context()
		defer cancel()
		rs, err := sf.open(ctx, config.Home(), c.log)
		if err != nil {
			return err
		}
		fl := sf.fleet(rs, c.log)
		fl.KeyType, fl.CALifetime, fl.ClientLifetime = kt, caLifetime, clientLifetime
		if err := ncf.apply(fl); err != nil {
			return err
		}
		res, err := fl.Init(ctx, certs.InitOptions{Dir: out, Address: address, CAKey: sf.caKey(rs.Ref.Region)})
		if err != nil {
			return err
		}
		res.Mode = rs.Mode
		if asJSON {
			return printJSON(c.stdout, res)
		}
		printResult(c.stdout, res)
		printPin(c.stdout, res)
		return nil
	}
	return cmd
}

// printPin prints the root's fingerprint in the forms a joining machine
// takes it: a node's settings line (user data, /etc/default/joblet) and
// rnx's flag. Whoever pins it refuses a store holding another root.
func printPin(w io.Writer, r *certs.Result) {
	for _, it := range r.Items {
		if it.Name != "CA Certificate" {
			continue
		}
		pin := "sha256:" + it.Fingerprint
		fmt.Fprintf(w, "Root CA fingerprint: %s\n", pin)
		fmt.Fprintln(w, "Pin it where machines join (a joining node or rnx then refuses a store holding another root):")
		fmt.Fprintf(w, "  user data or /etc/default/joblet: JOBLET_CA_FINGERPRINT=%s\n", pin)
		fmt.Fprintf(w, "  rnx config init ... --ca-fingerprint %s\n", pin)
	}
}
