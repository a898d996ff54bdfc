package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
)

func (c *cli) revokeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revoke --serial S | --cert FILE | --config RNX-CONFIG [--node NAME] [--reason R]",
		Short: "add a certificate to the fleet's CRL (<prefix>/crl)",
		Args:  noArgs,
	}
	fs := cmd.Flags()
	sf := addStoreFlags(fs, withDirStore|withCreate|withReplicas)
	var serialFlag, certFile, rnxFile, nodeName, reason string
	var asJSON bool
	fs.StringVar(&serialFlag, "serial", "", "serial of the certificate to revoke (hex, as status prints it)")
	fs.StringVar(&certFile, "cert", "", "or: the certificate file (PEM)")
	fs.StringVar(&rnxFile, "config", "", "or: a client config (rnx-config.yml): revoke the certificate of its entry --node (default: the one rnx uses)")
	fs.StringVar(&nodeName, "node", "", "with --config: the entry whose certificate to revoke")
	fs.StringVar(&reason, "reason", "unspecified", "why, by RFC 5280 name or number: "+reasonList())
	fs.BoolVar(&asJSON, "json", false, "print the revocation, the CRL's entries and the push as JSON")
	pf := addPushFlags(fs)
	cmd.RunE = func(*cobra.Command, []string) error {
		code, err := parseReason(reason)
		if err != nil {
			return err
		}
		serial, crt, err := revokeTarget(serialFlag, certFile, rnxFile, nodeName)
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
		who := cutOff(crt)
		if asJSON {
			return printJSON(c.stdout, map[string]any{"serial": pki.SerialHex(serial), "reason": pki.ReasonName(code), "store": fl.StoreDesc, "revocations": list, "cutOff": who,
				"push": c.pushCRL(fl, pf, true)})
		}
		fmt.Fprintf(c.stdout, "🚫 revoked serial %s (%s) in %s (%d revoked in all)\n", pki.SerialHex(serial), pki.ReasonName(code), fl.StoreDesc, len(list))
		fmt.Fprintf(c.stdout, "   cut off: %s\n", who)
		c.pushCRL(fl, pf, false)
		return nil
	}
	return cmd
}

// revokeTarget is the serial to revoke and, when known, its certificate:
// --serial, --cert FILE, or the certificate of an rnx config's entry.
func revokeTarget(serial, certFile, rnxFile, node string) (*big.Int, *x509.Certificate, error) {
	given := 0
	for _, v := range []string{serial, certFile, rnxFile} {
		if v != "" {
			given++
		}
	}
	if given != 1 {
		return nil, nil, usagef("give one of --serial, --cert or --config")
	}
	if node != "" && rnxFile == "" {
		return nil, nil, usagef("--node selects an entry of --config")
	}
	if rnxFile == "" {
		s, err := serialOf(serial, certFile)
		if err != nil || certFile == "" {
			return s, nil, err
		}
		b, _ := os.ReadFile(certFile)
		crt, _ := leafOf(b)
		return s, crt, nil
	}
	cfg, err := config.LoadRnx(rnxFile)
	if err != nil {
		return nil, nil, err
	}
	name, n, err := cfg.Select(node)
	if err != nil {
		return nil, nil, usagef("%s: %v (entries: %s)", rnxFile, err, strings.Join(cfg.NodeNames(), ", "))
	}
	crt, err := pki.ParseLeaf([]byte(n.Cert))
	if err != nil {
		return nil, nil, fmt.Errorf("%s, entry %q: %w", rnxFile, name, err)
	}
	return crt.SerialNumber, crt, nil
}

// cutOff says who loses access when crt is revoked: a role's certificate
// is shared by every config made from it.
func cutOff(crt *x509.Certificate) string {
	if crt == nil {
		return "whoever holds the certificate with this serial (`joblet certs status` and `rnx info` show serials)"
	}
	if p, ok, _ := pki.PersonOf(crt); ok {
		return fmt.Sprintf("%s's login as %s, until it expires on %s; their next `rnx login` gets a new certificate unless the identity policy denies them (add them to deny and sign it: `joblet certs identity-policy sign`)",
			p.ARN, p.Role, crt.NotAfter.UTC().Format(time.RFC3339))
	}
	if role, err := pki.RoleOf(crt); err == nil && crt.ExtKeyUsage != nil && slices.Contains(crt.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return fmt.Sprintf("every client config holding this %s certificate (%s): each copy of the role's config made from it. If it is the role's current certificate, give the role a new one with `joblet certs reissue --role %s` (its users then run `rnx config refresh`)", role, crt.Subject.CommonName, role)
	}
	return fmt.Sprintf("the holder of %s (a server certificate: the node renews it on its next refresh)", crt.Subject.String())
}

// parseReason takes an RFC 5280 reason by name or number.
func parseReason(v string) (int, error) {
	if code, ok := pki.RevocationReasons[v]; ok {
		return code, nil
	}
	for name, code := range pki.RevocationReasons {
		if strings.EqualFold(name, v) || strconv.Itoa(code) == v {
			return code, nil
		}
	}
	return 0, usagef("unknown --reason %q: use one of %s", v, reasonList())
}

// reasonList is every reason, in code order, with its number.
func reasonList() string {
	names := make([]string, len(pki.RevocationReasons))
	for name, code := range pki.RevocationReasons {
		if code < len(names) {
			names[code] = fmt.Sprintf("%s (%d)", name, code)
		}
	}
	return strings.Join(names, ", ")
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
	crt, err := leafOf(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	return crt.SerialNumber, nil
}

// leafOf is the first certificate of a PEM file that may hold a chain and
// a key (a person's <config>.login.pem).
func leafOf(b []byte) (*x509.Certificate, error) {
	certs, _ := pki.SplitPEM(b)
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate in it")
	}
	return pki.ParseLeaf(certs)
}
