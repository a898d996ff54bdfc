package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ehsaniara/joblet/internal/backend"
	"github.com/ehsaniara/joblet/internal/backend/kms"
	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
)

// exitCode ends the command with a code and no message of its own.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit %d", int(e)) }

func statusCmd(args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("joblet certs status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sf := addStoreFlags(fs)
	home := fs.String("home", jobletHome(), "joblet home")
	srvPath := fs.String("config", "", "this node's server config (default: HOME/config/joblet-config.yml when it exists)")
	rnxPath := fs.String("rnx-config", "", "an rnx config to compare with the store (default: HOME/config/rnx-config.yml when it exists)")
	warnDays := fs.Int("warn-days", 30, "warn about certificates expiring within this many days")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	orDefault := func(p, name string) string {
		if p != "" {
			return p
		}
		if d := filepath.Join(*home, "config", name); fileExists(d) {
			return d
		}
		return ""
	}
	o := certs.StatusOptions{ServerConfig: orDefault(*srvPath, "joblet-config.yml"),
		RnxConfig: orDefault(*rnxPath, "rnx-config.yml"), WarnDays: *warnDays, CAKMSKeyID: *sf.caKMS}
	fl := &certs.Fleet{Prefix: *sf.prefix, Log: log}
	ctx, cancel := sf.context()
	defer cancel()
	// A node's own config says where its store is; otherwise the flags do.
	if cfg, err := config.LoadServer(o.ServerConfig); o.ServerConfig != "" && err == nil && cfg.Store.Kind != "" {
		fl.Prefix = cfg.Store.Prefix
		fl.Store, fl.StoreDesc, o.StoreErr = backend.OpenStore(ctx, cfg.Store, log)
	} else {
		rs, err := sf.resolve(ctx, *home, log)
		if errors.Is(err, errUsage) {
			return err
		}
		if err != nil {
			o.StoreErr, fl.StoreDesc = err, "store"
		} else {
			fl.Store, fl.StoreDesc = rs.Store, rs.Desc
		}
	}
	if o.StoreErr != nil {
		fl.Store = nil
	}
	rep := fl.Status(ctx, o)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printStatus(stdout, rep)
	}
	if rep.Level != certs.OK {
		return exitCode(rep.Level)
	}
	return nil
}

func printStatus(w io.Writer, r *certs.Report) {
	mark := map[int]string{certs.OK: "✅", certs.Attention: "⚠️ ", certs.Broken: "❌"}
	fmt.Fprintf(w, "store: %s", r.Store)
	if r.Phase != "" {
		fmt.Fprintf(w, " (CA rotation: %s)", r.Phase)
	}
	fmt.Fprintln(w)
	if r.CAKey != "" {
		fmt.Fprintf(w, "CA key: %s\n", r.CAKey)
	}
	for _, c := range r.Certificates {
		fmt.Fprintf(w, "%s %s\n     %s\n     subject %s, serial %s\n     sha256 %s\n     valid %s to %s (%d days left)\n",
			mark[c.Level], c.Name, c.Where, c.Subject, c.Serial, c.Fingerprint,
			c.NotBefore.Format("2006-01-02"), c.NotAfter.Format("2006-01-02"), c.DaysLeft)
		if len(c.SANs) > 0 {
			fmt.Fprintf(w, "     SANs %s\n", strings.Join(c.SANs, ", "))
		}
	}
	for _, rv := range r.Revocations {
		fmt.Fprintf(w, "🚫 revoked serial %s at %s (reason %d)\n", rv.Serial, rv.RevokedAt.Format(time.RFC3339), rv.Reason)
	}
	if len(r.Problems) == 0 {
		fmt.Fprintln(w, "all good")
		return
	}
	fmt.Fprintln(w, "problems:")
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  - %s\n", p)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func iamPolicyCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("joblet certs iam-policy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	flow := fs.String("for", "", "bootstrap, node, rotation or client-<role>")
	prefix := fs.String("prefix", envOr("SECRETS_PREFIX", "joblet"), "secret name prefix (env SECRETS_PREFIX)")
	region := fs.String("region", envOr("EC2_REGION", os.Getenv("AWS_REGION")), "region in the secret ARNs (default *)")
	account := fs.String("account", "", "AWS account id in the secret ARNs (default *)")
	kmsKey := fs.String("kms-key-arn", "", "ARN of the customer KMS key the secrets are encrypted with")
	replicas := fs.Bool("replicas", false, "the secrets are created with replicas (--replica-regions)")
	caKMS := fs.String("ca-kms-key-id", envOr("JOBLET_CA_KMS_KEY_ID", ""), "ARN of the KMS key that holds the CA's private key (KMS mode; give the key ARN, not an alias) (env JOBLET_CA_KMS_KEY_ID)")
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	p, err := certs.IAMPolicy(*flow, certs.PolicyOptions{Prefix: *prefix, Region: *region, Account: *account, KMSKeyARN: *kmsKey, Replicas: *replicas, CAKMSKeyARN: *caKMS})
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	b, err := p.JSON()
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, string(b))
	return nil
}

func revokeCmd(args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("joblet certs revoke", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sf := addStoreFlags(fs)
	serialFlag := fs.String("serial", "", "serial of the certificate to revoke (hex, as status prints it)")
	certFile := fs.String("cert", "", "or: the certificate file (PEM)")
	reason := fs.String("reason", "unspecified", "keyCompromise, superseded, cessationOfOperation, affiliationChanged, cACompromise or unspecified")
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	code, ok := pki.RevocationReasons[*reason]
	if !ok {
		return fmt.Errorf("%w: unknown --reason %q", errUsage, *reason)
	}
	var serial *big.Int
	switch {
	case (*serialFlag == "") == (*certFile == ""):
		return fmt.Errorf("%w: give one of --serial or --cert", errUsage)
	case *serialFlag != "":
		s, err := pki.ParseSerial(*serialFlag)
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		serial = s
	default:
		b, err := os.ReadFile(*certFile)
		if err != nil {
			return err
		}
		c, err := pki.ParseCert(b)
		if err != nil {
			return fmt.Errorf("%s: %w", *certFile, err)
		}
		serial = c.SerialNumber
	}
	ctx, cancel := sf.context()
	defer cancel()
	rs, err := sf.resolve(ctx, jobletHome(), log)
	if err != nil {
		return err
	}
	list, err := (&certs.Fleet{Store: rs.Store, StoreDesc: rs.Desc, Prefix: *sf.prefix, OpenKMS: kms.OpenerFor(rs.Ref)}).Revoke(ctx, serial, code)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "🚫 revoked serial %s in %s (%d revoked in all); nodes refuse it after their next refresh, rnx after `rnx config refresh`\n", serial.Text(16), rs.Desc, len(list))
	return nil
}

func reissueCmd(args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("joblet certs reissue", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sf := addStoreFlags(fs)
	roleFlag := fs.String("role", "", "the role whose client certificate and key are replaced: admin, maintainer, developer or reader")
	revoke := fs.Bool("revoke", false, "also revoke the replaced certificate (reason superseded)")
	keyType := fs.String("key-type", envOr("JOBLET_KEY_TYPE", string(pki.ECDSAP256)), "key type of the new key")
	life := fs.String("client-lifetime", "730d", "lifetime of the new certificate")
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	role, err := pki.ParseRole(*roleFlag)
	if err != nil {
		return fmt.Errorf("%w: --role: %v", errUsage, err)
	}
	kt, err := pki.ParseKeyType(*keyType)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	lifetime, err := parseLifetime("client-lifetime", *life)
	if err != nil {
		return err
	}
	ctx, cancel := sf.context()
	defer cancel()
	rs, err := sf.resolve(ctx, jobletHome(), log)
	if err != nil {
		return err
	}
	fl := &certs.Fleet{Store: rs.Store, StoreDesc: rs.Desc, Prefix: *sf.prefix, KeyType: kt, ClientLifetime: lifetime, OpenKMS: kms.OpenerFor(rs.Ref)}
	res, err := fl.Reissue(ctx, role)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "🔁 %s client certificate re-issued in %s: serial %s replaces %s, expires %s; clients of that role get it with `rnx config refresh`\n",
		role, rs.Desc, res.NewSerial, res.OldSerial, res.NotAfter.Format("2006-01-02"))
	if *revoke {
		old, _ := pki.ParseSerial(res.OldSerial)
		if _, err := fl.Revoke(ctx, old, pki.RevocationReasons["superseded"]); err != nil {
			return fmt.Errorf("the new certificate is in place, but revoking the old one failed (re-run `joblet certs revoke --serial %s`): %w", res.OldSerial, err)
		}
		fmt.Fprintf(stdout, "🚫 revoked serial %s (superseded); nodes refuse it after their next refresh\n", res.OldSerial)
	}
	return nil
}
