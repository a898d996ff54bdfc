package awssm

import (
	"context"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/ehsaniara/joblet/internal/secretstore"
)

// Versions returns the AWSCURRENT version id of each name that exists, from
// one ListSecrets call filtered on the names' common prefix (more only when
// the prefix holds more than a page of secrets). ListSecrets returns
// metadata, never a value, and is one billed API call however many secrets
// it describes: a node that finds every version unchanged reads nothing
// more. It needs secretsmanager:ListSecrets (which takes no resource).
func (s *Store) Versions(ctx context.Context, names []string) (map[string]string, error) {
	out := map[string]string{}
	err := s.listStages(ctx, names, func(name string, stages map[string][]string) {
		for id, st := range stages {
			if slices.Contains(st, string(secretstore.Current)) {
				out[name] = id
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// listStages calls visit with the labels of each version of each of names
// that exists (not deleted), from ListSecrets filtered on the names'
// common prefix: one call unless the prefix holds more than a page.
func (s *Store) listStages(ctx context.Context, names []string, visit func(name string, versionStages map[string][]string)) error {
	if len(names) == 0 {
		return nil
	}
	in := &sm.ListSecretsInput{
		Filters:    []smtypes.Filter{{Key: smtypes.FilterNameStringTypeName, Values: []string{commonPrefix(names)}}},
		MaxResults: aws.Int32(100),
	}
	for {
		res, err := s.api.ListSecrets(ctx, in)
		if err != nil {
			return s.explain(err, "ListSecrets", names...)
		}
		for _, e := range res.SecretList {
			if name := aws.ToString(e.Name); slices.Contains(names, name) && e.DeletedDate == nil {
				visit(name, e.SecretVersionsToStages)
			}
		}
		if aws.ToString(res.NextToken) == "" { // moto answers "" for "no more"
			return nil
		}
		in.NextToken = res.NextToken
	}
}

// commonPrefix is the longest prefix of every name that ends at a "/" (the
// fleet's prefix), so the filter matches the fleet's secrets and no other.
func commonPrefix(names []string) string {
	p := names[0]
	for _, n := range names[1:] {
		for !strings.HasPrefix(n, p) {
			p = p[:len(p)-1]
		}
	}
	if i := strings.LastIndex(p, "/"); i >= 0 {
		return p[:i+1]
	}
	return p
}

// List lists the secrets of the folder dir (secretstore.Lister): one
// ListSecrets call filtered on dir+"/" (more only past a page), names and
// creation and last-changed dates, never a value. The name filter is a prefix match that
// ignores case, so each name is checked again here, exactly; a secret
// scheduled for deletion is not listed.
func (s *Store) List(ctx context.Context, dir string) ([]secretstore.Listed, error) {
	in := &sm.ListSecretsInput{
		Filters:    []smtypes.Filter{{Key: smtypes.FilterNameStringTypeName, Values: []string{dir + "/"}}},
		MaxResults: aws.Int32(100),
	}
	var out []secretstore.Listed
	for {
		res, err := s.api.ListSecrets(ctx, in)
		if err != nil {
			return nil, s.explain(err, "ListSecrets", dir+"/")
		}
		for _, e := range res.SecretList {
			name := aws.ToString(e.Name)
			rest, ok := strings.CutPrefix(name, dir+"/")
			if !ok || rest == "" || strings.Contains(rest, "/") || e.DeletedDate != nil {
				continue
			}
			out = append(out, secretstore.Listed{Name: name, Created: aws.ToTime(e.CreatedDate), Changed: aws.ToTime(e.LastChangedDate)})
		}
		if aws.ToString(res.NextToken) == "" { // moto answers "" for "no more"
			return out, nil
		}
		in.NextToken = res.NextToken
	}
}

var _ secretstore.Lister = (*Store)(nil)
