package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/backend"
	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
)

func (c *cli) iamPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "iam-policy --for bootstrap|node|node-transition|rotation|rotator|issuer|client-<role>",
		Short: "print a least-privilege IAM policy (JSON) for one flow",
		Long: `Prints the least-privilege IAM policy of one flow:
  bootstrap        the first node of a fleet (creates the shared secrets)
  node             a joining or running node: the root certificate, the node-issuing
                   pair, the trust bundle and the CRL; no root key, no client key
  node-transition  a node of a fleet moving to the node-issuing CA (joblet certs node-ca),
                   until it has renewed from it: node plus the root's key
  rotation         the operator: rotation, re-issue, revocation, node-ca, FORCE_REGENERATE
  rotator          the Lambda function Secrets Manager calls to rotate the node-issuing
                   CA's key and the role pairs (joblet certs rotate-secret): the root's power
  issuer           joblet issuer or its Lambda function (rnx login): the user-issuing CA
                   and the identity policy; no key a node signs with, no root key
  client-<role>    rnx config init/refresh for one role

--bind-to-instance and --vpc-endpoint add Deny statements that make a node's
instance-role credentials useless off its instance or outside a VPC endpoint.`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	var flow, prefix, region, account, kmsKey, replicaRegions, caKMS string
	var replicasOld, bind bool
	var vpce string
	fs.StringVar(&flow, "for", "", "the flow: "+strings.Join(certs.PolicyFlows, ", "))
	backend.PrefixFlag(fs, &prefix)
	fs.StringVar(&region, "region", config.EnvOr("EC2_REGION", os.Getenv("AWS_REGION")), "region in the secret ARNs (env EC2_REGION, then AWS_REGION; default *)")
	fs.StringVar(&account, "account", "", "AWS account id in the secret ARNs (default *)")
	fs.StringVar(&kmsKey, "kms-key-id", "", "ARN of the customer KMS key the secrets are encrypted with (as given to bootstrap's --kms-key-id, but as an ARN)")
	fs.StringVar(&replicaRegions, "replica-regions", "", "the regions the secrets are replicated to (as given to bootstrap): adds the replication permissions")
	fs.StringVar(&caKMS, "ca-kms-key-id", config.EnvOr("JOBLET_CA_KMS_KEY_ID", ""), "ARN of the KMS key that holds the CA's private key (KMS mode; give the key ARN, not an alias) (env JOBLET_CA_KMS_KEY_ID)")
	fs.BoolVar(&bind, "bind-to-instance", false, "deny Secrets Manager calls made with the instance role's credentials from another VPC or address than the instance's (aws:ec2InstanceSourceVPC, aws:ec2InstanceSourcePrivateIPv4; needs a Secrets Manager VPC interface endpoint)")
	fs.StringVar(&vpce, "vpc-endpoint", "", "deny Secrets Manager calls that do not come through this VPC endpoint (vpce-...; aws:SourceVpce)")
	// The spellings before the flags were aligned with bootstrap's.
	fs.StringVar(&kmsKey, "kms-key-arn", "", "")
	fs.BoolVar(&replicasOld, "replicas", false, "")
	_ = fs.MarkDeprecated("kms-key-arn", "use --kms-key-id")
	_ = fs.MarkDeprecated("replicas", "use --replica-regions r1,r2")
	cmd.RunE = func(*cobra.Command, []string) error {
		p, err := certs.IAMPolicy(flow, certs.PolicyOptions{Prefix: prefix, Region: region, Account: account, KMSKeyARN: kmsKey,
			Replicas: replicasOld || strings.TrimSpace(replicaRegions) != "", CAKMSKeyARN: caKMS, BindToInstance: bind, VPCEndpoint: vpce})
		if err != nil {
			return usagef("%v", err)
		}
		if vpce != "" && !strings.HasPrefix(vpce, "vpce-") {
			return usagef("--vpc-endpoint %q: give the endpoint's id (vpce-...)", vpce)
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
