package config

import "github.com/spf13/pflag"

// DefaultPrefix is the secret prefix when SECRETS_PREFIX is not set.
const DefaultPrefix = "joblet"

// PrefixFlag defines --prefix into p, defaulting from SECRETS_PREFIX: the
// one definition every command that names a fleet's secrets uses.
func PrefixFlag(fs *pflag.FlagSet, p *string) {
	fs.StringVar(p, "prefix", EnvOr("SECRETS_PREFIX", DefaultPrefix), "secret name prefix (env SECRETS_PREFIX)")
}
