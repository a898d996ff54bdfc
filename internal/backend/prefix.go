package backend

import (
	"github.com/spf13/pflag"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// PrefixFlag defines --prefix into p, defaulting from SECRETS_PREFIX: the
// one definition every command that names a fleet's secrets uses.
func PrefixFlag(fs *pflag.FlagSet, p *string) {
	fs.StringVar(p, "prefix", config.EnvOr("SECRETS_PREFIX", config.DefaultPrefix), "secret name prefix (env SECRETS_PREFIX)")
}

// CheckPrefixFlag checks the --prefix a command was given (or took from
// SECRETS_PREFIX), when it has one: the one check, which both binaries
// make before any command runs, so a bad prefix is refused with nothing
// read or written.
func CheckPrefixFlag(fs *pflag.FlagSet) error {
	f := fs.Lookup("prefix")
	if f == nil {
		return nil
	}
	return secretstore.ValidatePrefix(f.Value.String())
}
