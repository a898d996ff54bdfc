package main

import (
	"context"
	"fmt"
	"time"

	"github.com/ehsaniara/joblet/internal/client"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/spf13/cobra"
)

func (a *app) infoCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "info",
		Short: "Show the node's identity, its certificate, your role and how it contains jobs",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.onNode(func(ctx context.Context, conn *client.Conn) error {
				info, err := conn.Info(ctx)
				if err != nil {
					return err
				}
				notAfter := time.Unix(info.ServerCertNotAfterUnix, 0).UTC().Format(time.RFC3339)
				// This client's own certificate: when it stops working.
				var clientSerial, clientNotAfter string
				if n := a.cfg.Nodes[conn.Name]; n != nil {
					if c, err := pki.ParseLeaf([]byte(n.Cert)); err == nil {
						clientSerial, clientNotAfter = pki.SerialHex(c.SerialNumber), c.NotAfter.UTC().Format(time.RFC3339)
					}
				}
				if asJSON {
					return a.printJSON(struct {
						Node                   string `json:"node"`
						Address                string `json:"address"`
						NodeID                 string `json:"nodeId"`
						Version                string `json:"version"`
						Role                   string `json:"role"`
						ServerCertSerial       string `json:"serverCertSerial"`
						ServerCertNotAfter     string `json:"serverCertNotAfter"`
						ServerCertIssuerSha256 string `json:"serverCertIssuerSha256"`
						JobIsolation           string `json:"jobIsolation"`
						ClientCertSerial       string `json:"clientCertSerial,omitempty"`
						ClientCertNotAfter     string `json:"clientCertNotAfter,omitempty"`
					}{conn.Name, conn.Address, info.NodeId, info.Version, info.CallerRole, info.ServerCertSerial, notAfter, info.ServerCertIssuerSha256,
						isolation(info.JobIsolation), clientSerial, clientNotAfter})
				}
				issuer := info.ServerCertIssuerSha256
				if issuer == "" {
					issuer = "(none of the node's trusted CAs)"
				}
				fmt.Fprintf(a.out, "node:      %s\naddress:   %s\nnode id:   %s\nversion:   %s\nrole:      %s\njobs:      %s\n"+
					"server certificate serial %s, expires %s\nserver certificate issuer sha256 %s\n",
					conn.Name, conn.Address, info.NodeId, info.Version, info.CallerRole, a.clean(isolation(info.JobIsolation)), info.ServerCertSerial, notAfter, issuer)
				if clientNotAfter != "" {
					fmt.Fprintf(a.out, "client certificate serial %s, expires %s (`rnx config refresh` after the operator re-issues it)\n", clientSerial, clientNotAfter)
				}
				return nil
			})
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the node info as JSON")
	return c
}

// isolation is the node's job containment as it reports it; a node that
// predates the field says nothing, which must not read as "none".
func isolation(s string) string {
	if s == "" {
		return "unknown (the node predates reporting it)"
	}
	return s
}
