package certs

import (
	"encoding/json"
	"fmt"
	"slices"
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
	// CAKMSKeyARN: the fleet keeps its CA key in this KMS key. The flows
	// that sign with the root (bootstrap, rotation, node-transition) then
	// get kms:Sign and kms:GetPublicKey on it and no access to ca-key; a
	// node gets nothing of it (it signs with the node-issuing CA).
	CAKMSKeyARN string
	// BindToInstance denies the node's and first node's Secrets Manager
	// calls made with instance-role credentials from anywhere but the
	// instance they were issued to (aws:ec2InstanceSourceVPC and
	// aws:ec2InstanceSourcePrivateIPv4 against the request's VPC and
	// address). These keys are only compared on calls through a Secrets
	// Manager VPC interface endpoint: use it with one.
	BindToInstance bool
	// VPCEndpoint (vpce-...) denies those calls unless they come through
	// this VPC endpoint (aws:SourceVpce).
	VPCEndpoint string
}

// PolicyFlows are the flows iam-policy knows.
var PolicyFlows = []string{"bootstrap", "node", "node-transition", "rotation", "rotator", "issuer", "client-admin", "client-maintainer", "client-developer", "client-reader"}

// IAMPolicy returns the least-privilege policy for a flow:
//   - bootstrap: the first node of a fleet (reads, creates the shared secrets);
//   - node: a joining or running node: the root certificate, the
//     node-issuing pair, the trust bundle and the CRL; no root key, no
//     client key;
//   - node-transition: a node of a fleet moving to the node-issuing CA
//     (`joblet certs node-ca`), until it renewed from it: node, plus the
//     root's key (ca-key, or kms:Sign on the root's KMS key);
//   - rotation: the operator who rotates the CA or forces regeneration;
//   - rotator: the Lambda function Secrets Manager calls to rotate the
//     node-issuing CA's key, the role pairs and the root (`joblet certs
//     rotate-secret`): it holds the root's power, and a root run makes a
//     rotate-ca step, so it reads and writes what the rotation flow does,
//     and creates the records a role's re-issue and a root's begin claim;
//   - issuer: `joblet issuer` or its Lambda function (rnx login): the
//     user-issuing CA, the identity policy and what verifies them (the
//     root certificate, the trust state); nothing a node signs with, no
//     root key. It calls STS with the user's own signed request, so it
//     needs no STS permission;
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
	// Every list below is what a scope of state.go reads: a policy grants
	// what the flow's reads need, no more.
	caKey := CAKeyRef{KeyID: o.CAKMSKeyARN}
	boot := bootstrapScope(caKey)
	all, shared := boot.shared(n), boot.names(n)
	batch := Statement{Sid: "BatchRead", Effect: "Allow", Action: []string{"secretsmanager:BatchGetSecretValue"}, Resource: []string{"*"}}
	read := Statement{Sid: "ReadSharedCertificates", Effect: "Allow", Action: []string{"secretsmanager:GetSecretValue"}, Resource: arn(shared...)}
	nodeRead := Statement{Sid: "ReadWhatANodeServesWith", Effect: "Allow", Action: []string{"secretsmanager:GetSecretValue"}, Resource: arn(nodeScope.names(n)...)}
	// A running node asks what changed before reading anything: one
	// ListSecrets call per refresh at rest. It lists names and metadata,
	// never a value, and takes no resource.
	changed := Statement{Sid: "SeeWhatChanged", Effect: "Allow", Action: []string{"secretsmanager:ListSecrets"}, Resource: []string{"*"}}
	// A running node looks once per start at the history of the trust
	// state and the CRL (nodehistory.go): a newer version put over is read
	// with GetSecretValue, which nodeRead grants.
	history := Statement{Sid: "SeeNewerVersionsPutOver", Effect: "Allow", Action: []string{"secretsmanager:ListSecretVersionIds"}, Resource: arn(n.Bundle(), n.CRL())}
	p := &Policy{Version: "2012-10-17"}
	switch {
	case flow == "node":
		p.Statement = []Statement{batch, nodeRead, changed, history}
	case flow == "node-transition":
		rootKey := scope{caKey: true, key: caKey}.keyNames(n)
		nodeRead.Resource = arn(append(nodeScope.names(n), rootKey...)...)
		p.Statement = []Statement{batch, nodeRead, changed, history}
	case flow == "bootstrap":
		p.Statement = []Statement{batch, read, changed,
			{Sid: "CreateSharedCertificates", Effect: "Allow", Action: []string{"secretsmanager:CreateSecret", "secretsmanager:TagResource"}, Resource: arn(append(all, n.Bundle())...)}}
	case flow == "rotation":
		// The operator also moves a fleet from ca-key to a KMS CA, revokes
		// and re-issues role certificates (records under client-reissue/).
		// ... and makes the user-issuing CA (`certs user-ca`).
		shared = append(wholeScope.names(n), n.UserCA())
		rot := arn(n.Prefix+"/ca-rotation/*", n.Prefix+"/client-reissue/*")
		// ListSecrets: each step first moves a rotation begun by an
		// earlier version onto its own label (adoptLegacyPending).
		p.Statement = []Statement{batch, changed,
			{Sid: "ReadCertificatesAndRotationRecords", Effect: "Allow", Action: []string{"secretsmanager:GetSecretValue", "secretsmanager:ListSecretVersionIds"}, Resource: append(arn(shared...), rot...)},
			{Sid: "WriteVersionsAndMoveStages", Effect: "Allow", Action: []string{"secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage"}, Resource: arn(shared...)},
			{Sid: "CreateTrustBundleAndRotationRecords", Effect: "Allow", Action: []string{"secretsmanager:CreateSecret", "secretsmanager:TagResource"}, Resource: append(arn(shared...), rot...)},
			// finish removes the record of the retired root (it holds a
			// copy of the current root's key); reissue and prune remove
			// the records of completed re-issues (each holds a role's key).
			// ListSecrets (changed) finds them.
			{Sid: "RemoveRetiredRotationRecords", Effect: "Allow", Action: []string{"secretsmanager:DeleteSecret"}, Resource: arn(n.Prefix+"/ca-rotation/*", n.Prefix+"/client-reissue/*")},
			// `certs schedule`: Secrets Manager's rotation of what the
			// rotation function rotates (RotateSecret also needs
			// lambda:InvokeFunction on that function, which only the
			// operator's account knows).
			{Sid: "ScheduleRotation", Effect: "Allow", Action: []string{"secretsmanager:RotateSecret", "secretsmanager:DescribeSecret"}, Resource: arn(n.RotatedSecrets()...)}}
	case flow == "rotator":
		// The node-issuing CA's key, the role pairs and the root's staged
		// rotation (rotateroot.go: a run makes one rotate-ca step): the
		// rotation flow's reads, writes and stage moves, and the records
		// a role's re-issue and a root's begin claim.
		shared = append(wholeScope.names(n), n.UserCA())
		recs := arn(n.Prefix+"/client-reissue/*", n.Prefix+"/ca-rotation/*")
		p.Statement = []Statement{batch, changed,
			{Sid: "ReadTheFleetAndItsVersions", Effect: "Allow", Action: []string{"secretsmanager:GetSecretValue", "secretsmanager:ListSecretVersionIds"}, Resource: append(arn(shared...), recs...)},
			{Sid: "WriteTheRotatedSecretsAndTheTrustState", Effect: "Allow", Action: []string{"secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage"}, Resource: arn(shared...)},
			{Sid: "CreateRecordsAndTheCrossCertificate", Effect: "Allow", Action: []string{"secretsmanager:CreateSecret", "secretsmanager:TagResource"}, Resource: append(arn(shared...), recs...)},
			{Sid: "RemoveRetiredRotationRecords", Effect: "Allow", Action: []string{"secretsmanager:DeleteSecret"}, Resource: arn(n.Prefix + "/ca-rotation/*")}}
	case flow == "issuer":
		p.Statement = []Statement{batch,
			{Sid: "ReadTheUserIssuingCAAndIdentityPolicy", Effect: "Allow", Action: []string{"secretsmanager:GetSecretValue"},
				Resource: arn(scope{userCA: true}.names(n)...)}}
	case strings.HasPrefix(flow, "client-"):
		role, err := pki.ParseRole(strings.TrimPrefix(flow, "client-"))
		if err != nil {
			return nil, fmt.Errorf("--for %s: %w", flow, err)
		}
		p.Statement = []Statement{batch,
			{Sid: "ReadRoleCertificate", Effect: "Allow", Action: []string{"secretsmanager:GetSecretValue"},
				Resource: arn(append(scope{}.names(n), scope{roles: []pki.Role{role}}.roleNames(n)...)...)}}
	default:
		return nil, fmt.Errorf("--for %q: use one of %s", flow, strings.Join(PolicyFlows, ", "))
	}
	writes := flow == "bootstrap" || flow == "rotation" || flow == "rotator"
	if o.Replicas && (flow == "bootstrap" || flow == "rotation") { // the secrets they create
		var created []string
		for _, st := range p.Statement {
			if slices.Contains(st.Action, "secretsmanager:CreateSecret") {
				created = st.Resource
			}
		}
		p.Statement = append(p.Statement, Statement{Sid: "ReplicateNewSecrets", Effect: "Allow",
			Action: []string{"secretsmanager:ReplicateSecretToRegions"}, Resource: created})
		if flow == "rotation" {
			// A record created with replicas is removed with them:
			// Secrets Manager deletes no secret that has replicas.
			p.Statement = append(p.Statement, Statement{Sid: "RemoveRecordsReplicas", Effect: "Allow",
				Action:   []string{"secretsmanager:DescribeSecret", "secretsmanager:RemoveRegionsFromReplication"},
				Resource: arn(n.Prefix+"/ca-rotation/*", n.Prefix+"/client-reissue/*")})
		}
	}
	if o.CAKMSKeyARN != "" && (flow == "bootstrap" || flow == "rotation" || flow == "rotator" || flow == "node-transition") {
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
	if flow == "bootstrap" || strings.HasPrefix(flow, "node") {
		p.Statement = append(p.Statement, o.instanceBinding()...)
	}
	return p, nil
}

// instanceBinding are the Deny statements that make the instance role's
// credentials useless off their instance (BindToInstance) or outside a VPC
// endpoint (VPCEndpoint), after AWS's data perimeter examples. They apply
// to Secrets Manager only, so other services the role may use (reached
// without an endpoint, where the keys are absent) are not cut off.
func (o PolicyOptions) instanceBinding() []Statement {
	var out []Statement
	sm := []string{"secretsmanager:*"}
	onInstance := map[string]any{"Null": map[string]string{"ec2:SourceInstanceARN": "false"}, "BoolIfExists": map[string]string{"aws:ViaAWSService": "false"}}
	with := func(op, key, value string) map[string]any {
		c := map[string]any{op: map[string]string{key: value}}
		for k, v := range onInstance {
			c[k] = v
		}
		return c
	}
	if o.BindToInstance {
		out = append(out,
			Statement{Sid: "DenyInstanceCredentialsFromAnotherVPC", Effect: "Deny", Action: sm, Resource: []string{"*"},
				Condition: with("StringNotEquals", "aws:ec2InstanceSourceVPC", "${aws:SourceVpc}")},
			Statement{Sid: "DenyInstanceCredentialsFromAnotherAddress", Effect: "Deny", Action: sm, Resource: []string{"*"},
				Condition: with("StringNotEquals", "aws:ec2InstanceSourcePrivateIPv4", "${aws:VpcSourceIp}")})
	}
	if o.VPCEndpoint != "" {
		out = append(out, Statement{Sid: "DenyOutsideTheVPCEndpoint", Effect: "Deny", Action: sm, Resource: []string{"*"},
			Condition: map[string]any{"StringNotEquals": map[string]string{"aws:SourceVpce": o.VPCEndpoint}}})
	}
	return out
}

// JSON renders the policy as IAM expects it.
func (p *Policy) JSON() ([]byte, error) { return json.MarshalIndent(p, "", "  ") }
