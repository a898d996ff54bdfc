package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/client"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/nodedir"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/push"
)

// rotationFailed is the message of the log line a failed rotation step
// writes, for an alarm to match (a CloudWatch Logs metric filter on the
// function's log group: "joblet rotation step failed").
const rotationFailed = "joblet rotation step failed"

func (c *cli) rotateSecretCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rotate-secret [--secret-id ID --token TOKEN --step STEP]",
		Short: "Secrets Manager's rotation function for the node-issuing CA, the role pairs and the root: one step, or the Lambda handler",
		Long: `Runs one step of Secrets Manager's rotation of <prefix>/node-ca-key, the
node-issuing CA's key, keyed by the rotation's ClientRequestToken (the id of the
version it makes), with the operator's power (the root's key; iam-policy --for
rotator). Every step is safe to run again: a step run twice never makes a second
key or certificate.

  createSecret   a new key and certificate under the root, listed in the signed
                 trust state, then the key written as version TOKEN (AWSPENDING)
  setSecret      nothing (createSecret listed it before writing the key)
  testSecret     the pending CA is the one the trust state lists, under the
                 current root, and issues a node's certificate that verifies
  finishSecret   the checks again, AWSCURRENT to version TOKEN, then
                 <prefix>/node-ca-cert gets its certificate; nodes renew from it
                 on their next refresh, clients trust the root and need nothing

For a role's key (<prefix>/client-key-<role>, <prefix>/client-key for admin) the
pair is re-issued with the contract of ` + "`joblet certs reissue`" + ` (configs from
before keep working until they expire or are revoked): createSecret claims the
new pair (the same on every run) and writes its certificate and key as version
TOKEN of both secrets; testSecret checks it is the role's, from the current root,
unrevoked; finishSecret moves AWSCURRENT on the key, then on the certificate.

For the root's key (<prefix>/ca-key, a root kept in the store) one run makes one
step of the staged contract of ` + "`joblet certs rotate-ca`" + `, the one the fleet's phase
calls for: begin (stable), promote (begun; once every node of --nodes trusts the
new root), finish (promoted; once every node serves from the new root and none
verified a client certificate of the old one within --client-window). A run the
fleet is not ready for names its step in version TOKEN, writes nothing else, and logs
"` + rotationWaits + `"; Secrets Manager retries it with the same token. After a
run the nodes of --nodes get the new trust state at once. The run's version is
never made current; AWSPENDING comes off it when the step is made.

A failed step changes no current version; it exits non-zero and logs a line
with the message "` + rotationFailed + `" (alarm on it). Secrets Manager keeps
AWSPENDING on version TOKEN, and its next attempt with the same token completes
the rotation.

As an AWS Lambda function (the runtime sets AWS_LAMBDA_RUNTIME_API): without
--step, it serves Secrets Manager's rotation events ({SecretId,
ClientRequestToken, Step}) until the runtime ends it. The function's
environment: SECRETS_PREFIX, JOBLET_NODES and JOBLET_CLIENT_WINDOW (for the
root's runs), and AWS_REGION (set by Lambda).`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	sf := addStoreFlags(fs, 0)
	var secretID, token, step string
	var asJSON bool
	fs.StringVar(&secretID, "secret-id", "", "the secret rotated (name or ARN): <prefix>/node-ca-key, or a role's key <prefix>/client-key[-ROLE]")
	fs.StringVar(&token, "token", "", "the rotation's ClientRequestToken (the id of the version it makes)")
	fs.StringVar(&step, "step", "", "createSecret, setSecret, testSecret or finishSecret")
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	rn := &rootRunFlags{}
	fs.StringVar(&rn.nodes, "nodes", os.Getenv(nodedir.Env), "the node directory (HOST:PORT or NODE_ID=HOST:PORT, comma-separated; env JOBLET_NODES): a run on the root's key asks each node whether the fleet is ready for its step, and hands each the new trust state after it")
	fs.StringVar(&rn.windowFlag, "client-window", config.EnvOr("JOBLET_CLIENT_WINDOW", "1h"), "a run that retires the old root waits while a node verified a client certificate of it within this long (env JOBLET_CLIENT_WINDOW)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if !cmd.Flags().Changed("use-secrets-manager") && os.Getenv("USE_SECRETS_MANAGER") == "" {
			sf.useSM = "true" // rotation is Secrets Manager's
		}
		w, err := time.ParseDuration(rn.windowFlag)
		if err != nil || w < 0 {
			return usagef("--client-window/JOBLET_CLIENT_WINDOW %q is not a duration of 0 or more (1h, 30m)", rn.windowFlag)
		}
		rn.window = w
		if step == "" && os.Getenv("AWS_LAMBDA_RUNTIME_API") != "" {
			if os.Getenv("JOBLET_SEEN_DIR") == "" {
				// The function's file system is read-only but /tmp.
				os.Setenv("JOBLET_SEEN_DIR", "/tmp/joblet-seen")
			}
			lambda.Start(func(ctx context.Context, e events.SecretsManagerSecretRotationEvent) (*certs.RotationResult, error) {
				return c.rotationStep(ctx, sf, rn, e.SecretID, e.ClientRequestToken, e.Step)
			})
			return nil
		}
		if secretID == "" || token == "" || step == "" {
			return usagef("--secret-id, --token and --step are required (or run it as a Lambda function)")
		}
		ctx, cancel := sf.context()
		defer cancel()
		res, err := c.rotationStep(ctx, sf, rn, secretID, token, step)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(c.stdout, res)
		}
		fmt.Fprintf(c.stdout, "🔑 %s: %s\n", res.Step, res.Done)
		return nil
	}
	return cmd
}

// rotationStep runs one step and logs its outcome: the failure line an alarm
// matches, or what it did.
func (c *cli) rotationStep(ctx context.Context, sf *storeFlags, rn *rootRunFlags, secretID, token, step string) (*certs.RotationResult, error) {
	res, err := c.rotateStepIn(ctx, sf, rn, secretID, token, step)
	if errors.Is(err, certs.ErrNotReady) {
		c.log.Warn(rotationWaits, "secret", secretID, "step", step, "token", token, "why", err,
			"current", "unchanged: Secrets Manager retries this run with the same token; it goes ahead once the fleet is ready")
		return nil, err
	}
	if err != nil {
		c.log.Error(rotationFailed, "secret", secretID, "step", step, "token", token, "error", err,
			"current", "unchanged: Secrets Manager's next attempt with this token takes up from here")
		return nil, err
	}
	c.log.Info("joblet rotation step done", "secret", res.Secret, "step", res.Step, "token", res.Token, "done", res.Done)
	return res, nil
}

func (c *cli) rotateStepIn(ctx context.Context, sf *storeFlags, rn *rootRunFlags, secretID, token, step string) (*certs.RotationResult, error) {
	rs, err := sf.open(ctx, config.Home(), c.log)
	if err != nil {
		return nil, err
	}
	vs, ok := rs.Store.(certs.VersionStore)
	if !ok {
		return nil, usagef("rotation by Secrets Manager needs the Secrets Manager store; %s is not one", rs.Desc)
	}
	fl := sf.fleet(rs, c.log)
	// The reader's credentials are read once per invocation, never once
	// per process: Lambda reuses a warm process, and after a promote run
	// the credentials it read were the outgoing root's (every later
	// question to the nodes counted as an old client's, and held the
	// finish back for as long as the process lived).
	rn = rn.forInvocation()
	var dir nodedir.Directory
	if rn.nodes != "" {
		if dir, err = nodedir.FromList(rn.nodes); err != nil {
			return nil, usagef("--nodes (JOBLET_NODES): %v", err)
		}
		fl.RootRunNodes = &certs.RootRunNodes{Addresses: dir.Addresses(), ClientWindow: rn.window, Info: rn.asker(fl)}
	}
	res, err := fl.RotateSecretStep(ctx, vs, secretID, token, step)
	if err == nil && step == certs.RotationFinish && rn.nodes != "" && res.Secret == (certs.Names{Prefix: sf.prefix}).CAKey() {
		// The nodes take the run's trust state now rather than at their
		// next refresh: the next run finds them ready sooner.
		if r := rn.push(ctx, fl, dir); r != nil {
			c.log.Info("joblet rotation pushed the trust state", "secret", res.Secret, "took", r.Took(), "nodes", len(dir.Addresses()), "missed", missed(r))
		}
	}
	return res, err
}

// rotationWaits is the log line of a run on the root's key that found the
// fleet not ready for its step: not a failure of the function, and worth
// an alarm when it lasts.
const rotationWaits = "joblet root rotation waits for the fleet"

// rootRunFlags is how a run on the root's key reaches the nodes.
type rootRunFlags struct {
	nodes, windowFlag string
	window            time.Duration

	once sync.Once
	node *config.Node
	err  error
}

// forInvocation is rn's settings with nothing read yet.
func (rn *rootRunFlags) forInvocation() *rootRunFlags {
	return &rootRunFlags{nodes: rn.nodes, windowFlag: rn.windowFlag, window: rn.window}
}

// creds are the reader role's credentials from the store, read once per
// invocation (forInvocation): the least a node answers GetNodeInfo and
// takes a pushed state from.
func (rn *rootRunFlags) creds(ctx context.Context, fl *certs.Fleet) (*config.Node, error) {
	rn.once.Do(func() {
		rn.node, rn.err = readerNode(ctx, fl)
		if rn.err != nil {
			rn.err = fmt.Errorf("the reader role's credentials, to ask the nodes: %w", rn.err)
		}
	})
	return rn.node, rn.err
}

// readerNode is the reader role's config entry as `rnx config refresh`
// hands it out: in the begun phase the pending certificate, from the new
// root, with the cross certificate (nodes that do not trust the new root
// yet accept it through the cross). A node counts every handshake with a
// certificate of the outgoing root as a client a finish waits for (the
// rule FinishCheck's RnxConfig keeps): with the current certificate, the
// function's own calls in a promote run would hold the finish run back
// for the client window.
func readerNode(ctx context.Context, fl *certs.Fleet) (*config.Node, error) {
	node, err := fl.ClientNode(ctx, pki.Reader, "nodes:0")
	if err != nil {
		return nil, err
	}
	b, err := (&config.Rnx{Version: config.RnxVersion, Nodes: map[string]*config.Node{"fleet": node}}).Marshal()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "joblet-rotator-") // /tmp: the function's only writable place
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "rnx-config.yml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, err
	}
	if _, err := fl.RefreshClientConfig(ctx, path, pki.Reader); err != nil {
		return nil, err
	}
	cfg, err := config.LoadRnx(path)
	if err != nil {
		return nil, err
	}
	if n := cfg.Nodes["fleet"]; n != nil {
		return n, nil
	}
	return nil, fmt.Errorf("the reader's refreshed config entry is missing")
}

func (rn *rootRunFlags) asker(fl *certs.Fleet) certs.NodeInfo {
	return func(ctx context.Context, address string) (certs.NodeFacts, error) {
		node, err := rn.creds(ctx, fl)
		if err != nil {
			return certs.NodeFacts{}, err
		}
		return client.NodeInfoWith(node)(ctx, address)
	}
}

func (rn *rootRunFlags) push(ctx context.Context, fl *certs.Fleet, dir nodedir.Directory) *push.Report {
	// The credentials again: a promote re-issued the reader's certificate.
	node, err := readerNode(ctx, fl)
	if err != nil {
		return nil
	}
	crl, trust, err := fl.StoredState(ctx)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, pushTimeout)
	defer cancel()
	// The one entry, named: Offer dials each node of a list with the
	// selected entry, and an unnamed selection finds no default here.
	r := push.Offer(ctx, dir, &config.Rnx{Nodes: map[string]*config.Node{"fleet": node}}, "fleet", crl, trust)
	return &r
}

// missed says which nodes did not take a push, and why.
func missed(r *push.Report) string {
	var out []string
	for _, m := range r.Missed() {
		out = append(out, m.Address+": "+m.Why)
	}
	return strings.Join(out, "; ")
}
