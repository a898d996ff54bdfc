package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/awsconf"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/issuer"
	"github.com/ehsaniara/joblet/internal/pki"
)

func (c *cli) issuerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "issuer --tls-cert FILE --tls-key FILE [--listen ADDR]",
		Short: "issue people short-lived certificates from their AWS identity (serves rnx login)",
		Long: `Serves rnx login over HTTPS: a person's rnx signs an STS GetCallerIdentity
request with their own AWS credentials, bound to this fleet and to the public
key it wants a certificate for, and sends it here unsent. The issuer checks it,
sends it to STS (the host the SDK resolves for its region, never one the caller
names), maps the identity STS answers with to a role by the root-signed
identity policy, and signs a certificate for that person and role with the
user-issuing CA (joblet certs user-ca), for at most --max-lifetime.

Its IAM policy: joblet certs iam-policy --for issuer (the user-issuing CA and
what verifies the policy; no key a node signs with, no root key).

Run as an AWS Lambda function (a function URL) the same binary needs no flags:
when AWS_LAMBDA_RUNTIME_API is set it serves Lambda's runtime API, with the
store from the environment (USE_SECRETS_MANAGER, SECRETS_PREFIX, AWS_REGION) and
TLS from the function URL.`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	sf := addStoreFlags(fs, withDirStore)
	var listen, certFile, keyFile string
	var maxLife, cacheFor time.Duration
	fs.StringVar(&listen, "listen", config.EnvOr("JOBLET_ISSUER_LISTEN", ":8443"), "address to serve HTTPS on (env JOBLET_ISSUER_LISTEN)")
	fs.StringVar(&certFile, "tls-cert", config.EnvOr("JOBLET_ISSUER_TLS_CERT", ""), "the issuer's HTTPS certificate chain, PEM (env JOBLET_ISSUER_TLS_CERT)")
	fs.StringVar(&keyFile, "tls-key", config.EnvOr("JOBLET_ISSUER_TLS_KEY", ""), "its private key, PEM (env JOBLET_ISSUER_TLS_KEY)")
	fs.DurationVar(&maxLife, "max-lifetime", pki.PersonMaxLifetime, fmt.Sprintf("the longest certificate it issues (at most %s)", pki.PersonMaxLifetime))
	fs.DurationVar(&cacheFor, "reread", time.Minute, "how long one read of the user-issuing CA and identity policy serves (a new policy reaches the issuer within it)")
	cmd.RunE = func(*cobra.Command, []string) error {
		if maxLife <= 0 || maxLife > pki.PersonMaxLifetime {
			return usagef("--max-lifetime %s: give a duration up to %s", maxLife, pki.PersonMaxLifetime)
		}
		lambdaMode := os.Getenv("AWS_LAMBDA_RUNTIME_API") != ""
		if !lambdaMode && (certFile == "" || keyFile == "") {
			return usagef("--tls-cert and --tls-key are required: the issuer serves HTTPS only (a certificate for its host name from your PKI, or run it as a Lambda function URL)")
		}
		ctx, cancel := sf.context()
		fl, err := sf.openFleet(ctx, config.Home(), c.log)
		if err != nil {
			cancel()
			return err
		}
		// The issuer's own AWS settings resolve STS's host per region:
		// AWS_ENDPOINT_URL_STS and the SDK's FIPS and dual-stack options.
		aws, err := awsconf.Load(ctx, awsconf.Options{Region: sf.region})
		cancel()
		if err != nil {
			return err
		}
		read := func(ctx context.Context) (*issuer.Material, error) {
			m, err := fl.IssuerMaterial(ctx)
			if err != nil {
				return nil, err
			}
			return &issuer.Material{CA: m.CA, Policy: m.Policy, Trust: m.Trust, TrustState: m.TrustState}, nil
		}
		is := &issuer.Issuer{Fleet: fl.Prefix, AWS: aws, STS: &http.Client{Timeout: 10 * time.Second},
			MaxLifetime: maxLife, Now: time.Now, Log: c.log, Material: issuer.Cached(read, cacheFor, time.Now)}
		if lambdaMode {
			c.log.Info("issuer: serving as an AWS Lambda function", "fleet", fl.Prefix, "store", fl.StoreDesc)
			lambda.Start(is.FunctionURL)
			return nil
		}
		return serveIssuer(is, listen, certFile, keyFile, c.log)
	}
	return cmd
}

// serveIssuer serves is over HTTPS until SIGINT or SIGTERM, re-reading its
// certificate files on each handshake (so a renewed certificate needs no
// restart).
func serveIssuer(is *issuer.Issuer, listen, certFile, keyFile string, log *slog.Logger) error {
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		return fmt.Errorf("the issuer's TLS pair (--tls-cert %s, --tls-key %s): %w", certFile, keyFile, err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		return &c, err
	}}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", listen, err)
	}
	log.Info("issuer: serving rnx login over HTTPS", "address", ln.Addr().String(), "fleet", is.Fleet)
	srv := &http.Server{Handler: is, TLSConfig: tc, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}
