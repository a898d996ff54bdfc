package main

import (
	"fmt"
	"math/big"
	"os"

	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
)

func (c *cli) revokeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revoke --serial S | --cert FILE [--reason R]",
		Short: "add a certificate to the fleet's CRL (<prefix>/crl)",
		Args:  noArgs,
	}
	fs := cmd.Flags()
	sf := addStoreFlags(fs, withDirStore|withCreate|withReplicas)
	var serialFlag, certFile, reason string
	var asJSON bool
	fs.StringVar(&serialFlag, "serial", "", "serial of the certificate to revoke (hex, as status prints it)")
	fs.StringVar(&certFile, "cert", "", "or: the certificate file (PEM)")
	fs.StringVar(&reason, "reason", "unspecified", "keyCompromise, superseded, cessationOfOperation, affiliationChanged, cACompromise or unspecified")
	fs.BoolVar(&asJSON, "json", false, "print the revocation, the CRL's entries and the push as JSON")
	pf := addPushFlags(fs)
	cmd.RunE = func(*cobra.Command, []string) error {
		code, ok := pki.RevocationReasons[reason]
		if !ok {
			return usagef("unknown --reason %q", reason)
		}
		serial, err := serialOf(serialFlag, certFile)
		if err != nil {
			return err
		}
		ctx, cancel := sf.context()
		defer cancel()
		fl, err := sf.openFleet(ctx, config.Home(), c.log)
		if err != nil {
			return err
		}
		list, err := fl.Revoke(ctx, serial, code)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(c.stdout, map[string]any{"serial": pki.SerialHex(serial), "reason": reason, "store": fl.StoreDesc, "revocations": list,
				"push": c.pushCRL(fl, pf, true)})
		}
		fmt.Fprintf(c.stdout, "🚫 revoked serial %s in %s (%d revoked in all)\n", pki.SerialHex(serial), fl.StoreDesc, len(list))
		c.pushCRL(fl, pf, false)
		return nil
	}
	return cmd
}

// serialOf is the serial given, or the serial of the certificate file given.
func serialOf(serial, certFile string) (*big.Int, error) {
	switch {
	case (serial == "") == (certFile == ""):
		return nil, usagef("give one of --serial or --cert")
	case serial != "":
		s, err := pki.ParseSerial(serial)
		if err != nil {
			return nil, usagef("%v", err)
		}
		return s, nil
	}
	b, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	crt, err := pki.ParseCert(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	return crt.SerialNumber, nil
}
