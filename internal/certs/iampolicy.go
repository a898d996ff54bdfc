package certs

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/ehsaniara/joblet/internal/pki"
)

// Policy is an IAM policy document.
type Policy struct {
	Version   string      `json:"Version"`
	Statement []Statement `json:"Statement"`
}

// Statement is one IAM policy statement.
type Statement struct {
	Sid       string         `json:"Sid"`
	Effect    string         `json:"Effect"`
	Action    []string       `json:"Action"`
	Resource  []string       `json:"Resource"`
	Condition map[string]any `json:"Condition,omitempty"`
}

// PolicyOptions shape the ARNs and the extras of a policy.
type PolicyOptions struct {
	Prefix, Region, Account string
	KMSKeyARN               string // the customer key the secrets are encrypted with
	Replicas                bool   // secrets are created with replicas
	// CAKMSKeyARN: the fleet keeps its CA key in this KMS key. Nodes then
	// get kms:Sign and kms:GetPublicKey on it and no access to ca-key.
	CAKMSKeyARN string
}

// PolicyFlows are the flows iam-policy knows.
var PolicyFlows = []string{"bootstrap", "node", "rotation", "client-admin", "client-maintainer", "client-developer", "client-reader"}

// IAMPolicy returns the least-privilege policy for a flow:
//   - bootstrap: the first node of a fleet (reads, creates the shared secrets);
//   - node: a joining or running node (reads only what it reads);
//   - rotation: the operator who rotates the CA or forces regeneration;
//   - client-<role>: `rnx config refresh` for that role (its pair, the CA
//     certificate and the trust bundle; never the CA key).
//
// Secret ARNs end in a hyphen and six random characters, hence "-??????".
// BatchGetSecretValue takes no resource (it needs GetSecretValue on each
// secret as well), hence "*".
func IAMPolicy(flow string, o PolicyOptions) (*Policy, error) {
	prefix, region, account := o.Prefix, o.Region, o.Account
	if region == "" {
		region = "*"
	}
	if account == "" {
		account = "*"
	}
	n := Names{Prefix: prefix}
	arn := func(names ...string) []string {
		out := make([]string, len(names))
		for i, name := range names {
			out[i] = fmt.Sprintf("arn:aws:secretsmanager:%s:%s:secret:%s-??????", region, account, name)
		}
		return out
	}
	all := n.Shared(o.CAKMSKeyARN != "")
	shared := append(all, n.Bundle(), n.CRL())
	batch := Statement{Sid: "BatchRead", Effect: "Allow", Action: []string{"secretsmanager:BatchGetSecretValue"}, Resource: []string{"*"}}
	read := Statement{Sid: "ReadSharedCertificates", Effect: "Allow", Action: []string{"secretsmanager:GetSecretValue"}, Resource: arn(shared...)}
	// A running node asks what changed before reading anything: one
	// ListSecrets call per refresh at rest. It lists names and metadata,
	// never a value, and takes no resource.
	changed := Statement{Sid: "SeeWhatChanged", Effect: "Allow", Action: []string{"secretsmanager:ListSecrets"}, Resource: []string{"*"}}
	p := &Policy{Version: "2012-10-17"}
	switch {
	case flow == "node":
		p.Statement = []Statement{batch, read, changed}
	case flow == "bootstrap":
		p.Statement = []Statement{batch, read, changed,
			{Sid: "CreateSharedCertificates", Effect: "Allow", Action: []string{"secretsmanager:CreateSecret", "secretsmanager:TagResource"}, Resource: arn(all...)}}
	case flow == "rotation":
		// The operator also moves a fleet from ca-key to a KMS CA, revokes
		// and re-issues role certificates (records under client-reissue/).
		shared = append(n.All(), n.CAKMSKey(), n.Bundle(), n.CRL())
		rot := arn(n.Prefix+"/ca-rotation/*", n.Prefix+"/client-reissue/*")
		p.Statement = []Statement{batch,
			{Sid: "ReadCertificatesAndRotationRecords", Effect: "Allow", Action: []string{"secretsmanager:GetSecretValue", "secretsmanager:ListSecretVersionIds"}, Resource: append(arn(shared...), rot...)},
			{Sid: "WriteVersionsAndMoveStages", Effect: "Allow", Action: []string{"secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage"}, Resource: arn(shared...)},
			{Sid: "CreateTrustBundleAndRotationRecords", Effect: "Allow", Action: []string{"secretsmanager:CreateSecret", "secretsmanager:TagResource"}, Resource: append(arn(shared...), rot...)}}
	case strings.HasPrefix(flow, "client-"):
		role, err := pki.ParseRole(strings.TrimPrefix(flow, "client-"))
		if err != nil {
			return nil, fmt.Errorf("--for %s: %w", flow, err)
		}
		p.Statement = []Statement{batch,
			{Sid: "ReadRoleCertificate", Effect: "Allow", Action: []string{"secretsmanager:GetSecretValue"},
				Resource: arn(n.CACert(), n.Bundle(), n.CRL(), n.ClientCert(role), n.ClientKey(role))}}
	default:
		return nil, fmt.Errorf("--for %q: use one of %s", flow, strings.Join(PolicyFlows, ", "))
	}
	writes := flow == "bootstrap" || flow == "rotation"
	if o.Replicas && writes {
		p.Statement = append(p.Statement, Statement{Sid: "ReplicateNewSecrets", Effect: "Allow",
			Action: []string{"secretsmanager:ReplicateSecretToRegions"}, Resource: p.Statement[len(p.Statement)-1].Resource})
	}
	if o.CAKMSKeyARN != "" && !strings.HasPrefix(flow, "client-") {
		p.Statement = append(p.Statement, Statement{Sid: "SignWithTheCAKeyInKMS", Effect: "Allow",
			Action: []string{"kms:Sign", "kms:GetPublicKey"}, Resource: []string{o.CAKMSKeyARN}})
	}
	if o.KMSKeyARN != "" {
		actions := []string{"kms:Decrypt"}
		if writes {
			actions = append(actions, "kms:GenerateDataKey")
		}
		svc := "secretsmanager.*.amazonaws.com"
		if o.Region != "" {
			svc = "secretsmanager." + o.Region + ".amazonaws.com"
		}
		p.Statement = append(p.Statement, Statement{Sid: "UseTheSecretsKeyThroughSecretsManager", Effect: "Allow", Action: actions,
			Resource: []string{o.KMSKeyARN}, Condition: map[string]any{"StringLike": map[string]string{"kms:ViaService": svc}}})
	}
	return p, nil
}

// JSON renders the policy as IAM expects it.
func (p *Policy) JSON() ([]byte, error) { return json.MarshalIndent(p, "", "  ") }
