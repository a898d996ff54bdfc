package awssm

import (
	"context"
	"errors"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/ehsaniara/joblet/internal/secretstore"
)

var _ secretstore.Historian = (*Store)(nil)

// History lists name's versions (deprecated ones included) in one call per
// page, then reads them newest first, one GetSecretValue each, while visit
// asks for more: a reader that stops at the first version it can trust pays
// two calls at rest. No cap: junk versions put on top must not push the
// newest genuine one out of reach (Secrets Manager itself drops unlabelled
// versions past 100 only once they are a day old).
func (s *Store) History(ctx context.Context, name string, visit func(secretstore.Version) bool) error {
	var ids []smtypes.SecretVersionsListEntry
	in := &sm.ListSecretVersionIdsInput{SecretId: aws.String(name), IncludeDeprecated: aws.Bool(true)}
	for {
		res, err := s.api.ListSecretVersionIds(ctx, in)
		if err != nil {
			var nf *smtypes.ResourceNotFoundException
			if errors.As(err, &nf) {
				return nil
			}
			return s.explain(err, "ListSecretVersionIds", name)
		}
		ids = append(ids, res.Versions...)
		if aws.ToString(res.NextToken) == "" {
			break
		}
		in.NextToken = res.NextToken
	}
	// Newest first; moto lists in creation order with every date "now",
	// so a stable sort of the reversed list keeps that order.
	slices.Reverse(ids)
	slices.SortStableFunc(ids, func(a, b smtypes.SecretVersionsListEntry) int {
		return aws.ToTime(b.CreatedDate).Compare(aws.ToTime(a.CreatedDate))
	})
	for _, v := range ids {
		res, err := s.api.GetSecretValue(ctx, &sm.GetSecretValueInput{SecretId: aws.String(name), VersionId: v.VersionId})
		if err != nil {
			var nf *smtypes.ResourceNotFoundException
			if errors.As(err, &nf) {
				continue // removed since it was listed
			}
			return s.explain(err, "GetSecretValue", name)
		}
		if !visit(secretstore.Version{Value: aws.ToString(res.SecretString), Created: aws.ToTime(res.CreatedDate)}) {
			return nil
		}
	}
	return nil
}
