package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
)

func (c *cli) iamPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "iam-policy --for bootstrap|node|rotation|client-<role>",
		Short: "print a least-privilege IAM policy (JSON) for one flow",
		Args:  noArgs,
	}
	fs := cmd.Flags()
	var flow, prefix, region, account, kmsKey, replicaRegions, caKMS string
	var replicasOld bool
	fs.StringVar(&flow, "for", "", "the flow: "+strings.Join(certs.PolicyFlows, ", "))
	fs.StringVar(&prefix, "prefix", config.EnvOr("SECRETS_PREFIX", certs.DefaultPrefix), "secret name prefix (env SECRETS_PREFIX)")
	fs.StringVar(&region, "region", config.EnvOr("EC2_REGION", os.Getenv("AWS_REGION")), "region in the secret ARNs (env EC2_REGION, then AWS_REGION; default *)")
	fs.StringVar(&account, "account", "", "AWS account id in the secret ARNs (default *)")
	fs.StringVar(&kmsKey, "kms-key-id", "", "ARN of the customer KMS key the secrets are encrypted with (as given to bootstrap's --kms-key-id, but as an ARN)")
	fs.StringVar(&replicaRegions, "replica-regions", "", "the regions the secrets are replicated to (as given to bootstrap): adds the replication permissions")
	fs.StringVar(&caKMS, "ca-kms-key-id", config.EnvOr("JOBLET_CA_KMS_KEY_ID", ""), "ARN of the KMS key that holds the CA's private key (KMS mode; give the key ARN, not an alias) (env JOBLET_CA_KMS_KEY_ID)")
	// The spellings before the flags were aligned with bootstrap's.
	fs.StringVar(&kmsKey, "kms-key-arn", "", "")
	fs.BoolVar(&replicasOld, "replicas", false, "")
	_ = fs.MarkDeprecated("kms-key-arn", "use --kms-key-id")
	_ = fs.MarkDeprecated("replicas", "use --replica-regions r1,r2")
	cmd.RunE = func(*cobra.Command, []string) error {
		p, err := certs.IAMPolicy(flow, certs.PolicyOptions{Prefix: prefix, Region: region, Account: account, KMSKeyARN: kmsKey,
			Replicas: replicasOld || strings.TrimSpace(replicaRegions) != "", CAKMSKeyARN: caKMS})
		if err != nil {
			return usagef("%v", err)
		}
		b, err := p.JSON()
		if err != nil {
			return err
		}
		fmt.Fprintln(c.stdout, string(b))
		return nil
	}
	return cmd
}
