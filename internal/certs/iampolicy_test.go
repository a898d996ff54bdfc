package certs_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/ehsaniara/joblet/internal/certs"
)

// resources lists the resources a policy grants action on.
func resources(p *certs.Policy, action string) []string {
	var out []string
	for _, st := range p.Statement {
		if st.Effect == "Allow" && slices.Contains(st.Action, action) {
			out = append(out, st.Resource...)
		}
	}
	return out
}

// The node policy reads the node's secrets and nothing else; only the
// flows that sign with the root touch its KMS key; node-transition adds
// the root's key, and nothing more.
func TestNodePolicies(t *testing.T) {
	arn := func(s string) string { return "arn:aws:secretsmanager:*:*:secret:joblet/" + s + "-??????" }
	node, err := certs.IAMPolicy("node", certs.PolicyOptions{Prefix: "joblet", CAKMSKeyARN: "arn:aws:kms:us-east-1:1:key/root"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{arn("ca-cert"), arn("node-ca-cert"), arn("node-ca-key"), arn("ca-bundle"), arn("crl"), arn("ca-cross"), arn("identity-policy")}
	if got := resources(node, "secretsmanager:GetSecretValue"); !slices.Equal(got, want) {
		t.Errorf("node reads %v, want %v", got, want)
	}
	if len(resources(node, "kms:Sign")) != 0 {
		t.Error("the node policy grants kms:Sign")
	}
	for _, flow := range []string{"bootstrap", "rotation"} {
		p, _ := certs.IAMPolicy(flow, certs.PolicyOptions{Prefix: "joblet", CAKMSKeyARN: "arn:aws:kms:us-east-1:1:key/root"})
		if !slices.Equal(resources(p, "kms:Sign"), []string{"arn:aws:kms:us-east-1:1:key/root"}) {
			t.Errorf("%s cannot sign with the root's KMS key", flow)
		}
	}
	for kms, root := range map[string]string{"": "ca-key", "arn:aws:kms:us-east-1:1:key/root": "ca-kms-key"} {
		tr, _ := certs.IAMPolicy("node-transition", certs.PolicyOptions{Prefix: "joblet", CAKMSKeyARN: kms})
		if got := resources(tr, "secretsmanager:GetSecretValue"); !slices.Equal(got, append(slices.Clone(want), arn(root))) {
			t.Errorf("node-transition (kms %q) reads %v", kms, got)
		}
	}
}

// --bind-to-instance and --vpc-endpoint deny the node's Secrets Manager
// calls off its instance or outside the endpoint, after AWS's data
// perimeter examples; the client policies get none of it.
func TestInstanceBinding(t *testing.T) {
	o := certs.PolicyOptions{Prefix: "joblet", BindToInstance: true, VPCEndpoint: "vpce-0abc"}
	p, err := certs.IAMPolicy("node", o)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := p.JSON()
	doc := string(b)
	for _, want := range []string{`"aws:ec2InstanceSourceVPC": "${aws:SourceVpc}"`, `"aws:ec2InstanceSourcePrivateIPv4": "${aws:VpcSourceIp}"`,
		`"ec2:SourceInstanceARN": "false"`, `"aws:ViaAWSService": "false"`, `"aws:SourceVpce": "vpce-0abc"`} {
		if !strings.Contains(doc, want) {
			t.Errorf("the bound node policy lacks %s:\n%s", want, doc)
		}
	}
	denies := 0
	for _, st := range p.Statement {
		if st.Effect == "Deny" {
			denies++
			if !slices.Equal(st.Action, []string{"secretsmanager:*"}) {
				t.Errorf("a deny reaches beyond Secrets Manager: %v", st.Action)
			}
		}
	}
	if denies != 3 {
		t.Errorf("%d deny statements, want 3", denies)
	}
	var round certs.Policy
	if err := json.Unmarshal(b, &round); err != nil {
		t.Fatal(err)
	}
	c, _ := certs.IAMPolicy("client-reader", o)
	for _, st := range c.Statement {
		if st.Effect == "Deny" {
			t.Error("a client policy got the instance binding")
		}
	}
}

// DeleteSecret reaches the records alone: the operator's (rotation) flow
// removes retired roots' rotation records and completed re-issues'
// records (prune); the rotation function only the former; no other flow
// removes anything.
func TestDeleteSecretOnlyRecords(t *testing.T) {
	arn := func(s string) string { return "arn:aws:secretsmanager:*:*:secret:joblet/" + s + "-??????" }
	for _, flow := range certs.PolicyFlows {
		p, err := certs.IAMPolicy(flow, certs.PolicyOptions{Prefix: "joblet"})
		if err != nil {
			t.Fatal(flow, err)
		}
		var want []string
		switch flow {
		case "rotation":
			want = []string{arn("ca-rotation/*"), arn("client-reissue/*")}
		case "rotator":
			want = []string{arn("ca-rotation/*")}
		}
		if got := resources(p, "secretsmanager:DeleteSecret"); !slices.Equal(got, want) {
			t.Errorf("%s removes %v, want %v", flow, got, want)
		}
	}
}

// With replicas, the flows replicate what they create (the bootstrap the
// fleet's secrets; the operator the records and the trust state), and the
// operator removes a record's replicas before the record.
func TestReplicaPolicies(t *testing.T) {
	arn := func(s string) string { return "arn:aws:secretsmanager:*:*:secret:joblet/" + s + "-??????" }
	for _, flow := range []string{"bootstrap", "rotation"} {
		p, err := certs.IAMPolicy(flow, certs.PolicyOptions{Prefix: "joblet", Replicas: true})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := resources(p, "secretsmanager:ReplicateSecretToRegions"), resources(p, "secretsmanager:CreateSecret"); !slices.Equal(got, want) {
			t.Errorf("%s replicates %v, creates %v", flow, got, want)
		}
		var want []string
		if flow == "rotation" {
			want = []string{arn("ca-rotation/*"), arn("client-reissue/*")}
		}
		if got := resources(p, "secretsmanager:RemoveRegionsFromReplication"); !slices.Equal(got, want) {
			t.Errorf("%s removes replicas of %v, want %v", flow, got, want)
		}
	}
	p, _ := certs.IAMPolicy("rotation", certs.PolicyOptions{Prefix: "joblet"})
	if len(resources(p, "secretsmanager:RemoveRegionsFromReplication")) != 0 {
		t.Error("without replicas, the operator's policy removes replicas")
	}
}
