package server_test

import (
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/idpolicy"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
)

// Attacker review of issue 26: whoever holds the user-issuing CA's key (a
// malicious or broken-into issuer host, anyone who reads <prefix>/user-ca)
// signs a client certificate with a role and no person in it. A node reads
// a certificate without an aws-iam URI SAN as a shared role certificate,
// which the identity policy never holds to a person: the issuer mints
// admin for nobody the policy names. The user-issuing CA only ever issues
// persons; a node must refuse anything else it signed, with or without a
// policy.
func TestReview26UserCASignsNamelessAdmin(t *testing.T) {
	st := storetest.NewMemoryStore()
	first := startNode(t, st)
	u := newUserCA(t, st)
	withPolicy := startNode(t, st, u.policy(t, idpolicy.Policy{
		Rules: []idpolicy.Rule{{User: "arn:aws:iam::111122223333:user/alice", Grant: pki.Reader}}}))
	for name, f := range map[string]*fleet{"a node holding a policy": withPolicy, "a node without a policy": first} {
		key, _ := pki.GenerateKey(pki.ECDSAP256, nil)
		is, err := u.ca.IssueClient(key.Public(), pki.Admin, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		keyPEM, _ := pki.EncodeKey(key)
		n := *f.rnx.Nodes["default"]
		n.Cert, n.Key = string(pki.EncodeCert(is.Cert))+string(pki.EncodeCert(u.ca.Cert)), string(keyPEM)
		if _, err := dial(t, "x", &n).Info(ctx(t)); err == nil {
			t.Errorf("%s accepts an admin certificate the user-issuing CA signed for no person", name)
		}
	}
}
