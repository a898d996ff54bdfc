package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/push"
)

func (c *cli) reissueCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "reissue --role ROLE [--revoke]",
		Short: "give one role a new key and client certificate from the current CA (no CA rotation)",
		Long: `Gives one role a new key and client certificate from the current CA. The new
pair is first recorded in <prefix>/client-reissue/<role>-<old serial> (create-only),
so two operators re-issuing at once, or a run after an interrupted one, write the
same pair. After its writes it prunes the records of completed re-issues past
their grace (an hour), as ` + "`joblet certs prune`" + ` does; its own record stays
for the grace, then the next reissue or prune removes it.`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	sf := addStoreFlags(fs, withDirStore|withCreate|withReplicas)
	var roleFlag, keyType, life string
	var revoke, asJSON bool
	fs.StringVar(&roleFlag, "role", "", "the role whose client certificate and key are replaced: admin, maintainer, developer or reader")
	fs.BoolVar(&revoke, "revoke", false, "also revoke the replaced certificate (reason superseded)")
	addKeyTypeFlag(fs, &keyType, "key type of the new key")
	fs.StringVar(&life, "client-lifetime", "730d", "lifetime of the new certificate")
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	pf := addPushFlags(fs)
	cmd.RunE = func(*cobra.Command, []string) error {
		if roleFlag == "" {
			return usagef("--role is required: admin, maintainer, developer or reader")
		}
		role, err := pki.ParseRole(roleFlag)
		if err != nil {
			return usagef("--role: %v", err)
		}
		kt, err := parseKeyType(keyType)
		if err != nil {
			return err
		}
		lifetime, err := parseLifetime("client-lifetime", life)
		if err != nil {
			return err
		}
		ctx, cancel := sf.context()
		defer cancel()
		fl, err := sf.openFleet(ctx, config.Home(), c.log)
		if err != nil {
			return err
		}
		fl.KeyType, fl.ClientLifetime = kt, lifetime
		var res *certs.ReissuedRevoked
		if revoke {
			res, err = fl.ReissueRevoke(ctx, role)
		} else {
			var r *certs.Reissued
			if r, err = fl.Reissue(ctx, role); r != nil {
				res = &certs.ReissuedRevoked{Reissued: *r}
			}
		}
		if res == nil {
			return err
		}
		if asJSON {
			out := struct {
				*certs.ReissuedRevoked
				Push   *push.Report  `json:"push,omitempty"`
				Pruned *certs.Pruned `json:"pruned,omitempty"`
			}{ReissuedRevoked: res}
			if res.Revoked {
				out.Push = c.pushCRL(fl, pf, true)
			}
			out.Pruned = c.pruneAfterReissue(ctx, fl, true)
			if jerr := printJSON(c.stdout, out); jerr != nil {
				return jerr
			}
		} else {
			fmt.Fprintf(c.stdout, "🔁 %s client certificate re-issued in %s: serial %s replaces %s, expires %s; clients of that role get it with `rnx config refresh`\n",
				role, fl.StoreDesc, res.NewSerial, res.OldSerial, pki.ExpiryText(res.NotAfter, time.Now()))
			if res.Revoked {
				fmt.Fprintf(c.stdout, "🚫 revoked serial %s (superseded)\n", res.OldSerial)
				c.pushCRL(fl, pf, false)
			}
			c.pruneAfterReissue(ctx, fl, false)
		}
		if errors.Is(err, certs.ErrRevokeAfterReissue) {
			return fmt.Errorf("%w: re-run `joblet certs revoke --serial %s --reason superseded`", err, res.OldSerial)
		}
		return err
	}
	return cmd
}
