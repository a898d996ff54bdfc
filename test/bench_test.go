package test

import (
	"testing"

	"github.com/ehsaniara/joblet/test/harness"
)

// BenchmarkEmbeddedBootstrap measures a whole `joblet certs bootstrap`
// process in embedded mode, side by side: detection off
// (USE_SECRETS_MANAGER=false) and auto with no metadata service (a refused
// connection, as on a laptop), so the ratio shows what EC2 detection costs.
func BenchmarkEmbeddedBootstrap(b *testing.B) {
	joblet, _ := harness.Bins(b)
	for _, mode := range []string{"false", "auto"} {
		b.Run("USE_SECRETS_MANAGER="+mode, func(b *testing.B) {
			for b.Loop() {
				env := harness.Env("JOBLET_HOME="+b.TempDir(), "USE_SECRETS_MANAGER="+mode, "JOBLET_SERVER_ADDRESS=127.0.0.1")
				if r := harness.Run(b, env, joblet, "certs", "bootstrap"); r.Code != 0 {
					b.Fatal(r)
				}
			}
		})
	}
}

// BenchmarkJoinSecretsManager measures a joining node's bootstrap through
// Secrets Manager (moto) against the embedded one in the same run.
func BenchmarkJoinSecretsManager(b *testing.B) {
	joblet, _ := harness.Bins(b)
	moto := resetMoto(b)
	_, _, env := smNode(b, moto.URL)
	if r := harness.Run(b, env, joblet, "certs", "bootstrap"); r.Code != 0 {
		b.Fatal(r)
	}
	for b.Loop() {
		_, _, env := smNode(b, moto.URL)
		if r := harness.Run(b, env, joblet, "certs", "bootstrap"); r.Code != 0 {
			b.Fatal(r)
		}
	}
}
