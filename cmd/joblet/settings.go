package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/ehsaniara/joblet/internal/config"
)

// settingVars are the environment variables of the flags a settings file
// may set, in the order they are read: the same names the flags' help and
// /etc/default/joblet use. With FORCE_REGENERATE (refused unless false)
// they are the only variables a settings file may set (knownSettings).
var settingVars = []struct {
	flag string
	vars []string
}{
	{"home", []string{"JOBLET_HOME"}},
	{"use-secrets-manager", []string{"USE_SECRETS_MANAGER"}},
	{"store", []string{"JOBLET_STORE"}},
	{"prefix", []string{"SECRETS_PREFIX"}},
	{"region", []string{"EC2_REGION", "AWS_REGION"}},
	{"timeout", []string{"JOBLET_TIMEOUT"}},
	{"kms-key-id", []string{"JOBLET_KMS_KEY_ID"}},
	{"replica-regions", []string{"JOBLET_REPLICA_REGIONS"}},
	{"ca-kms-key-id", []string{"JOBLET_CA_KMS_KEY_ID"}},
	{"key-type", []string{"JOBLET_KEY_TYPE"}},
	{"server-address", []string{"JOBLET_SERVER_ADDRESS"}},
	{"listen-address", []string{"JOBLET_LISTEN_ADDRESS"}},
	{"port", []string{"JOBLET_SERVER_PORT"}},
	{"additional-names", []string{"JOBLET_ADDITIONAL_NAMES"}},
	{"public-address", []string{"JOBLET_PUBLIC_ADDRESS"}},
	{"metrics-address", []string{"JOBLET_METRICS_ADDRESS"}},
	{"node-id", []string{"JOBLET_NODE_ID"}},
	{"ca-fingerprint", []string{"JOBLET_CA_FINGERPRINT"}},
	{"permit-server-names", []string{"JOBLET_PERMIT_SERVER_NAMES"}},
	{"empty-store-pause", []string{"JOBLET_EMPTY_STORE_PAUSE"}},
}

// knownSettings are the variables a settings file may set.
func knownSettings() []string {
	var known []string
	for _, s := range settingVars {
		known = append(known, s.vars...)
	}
	return append(known, "FORCE_REGENERATE")
}

// applySettings reads a settings file (the unit's EnvironmentFile) as the
// unit does, into the environment, where a variable already set keeps its
// value; then every flag the command line did not set takes its variable.
// Precedence: flag, environment, settings file, then (bootstrap) the
// node's existing config, then the default. Read only when named: never
// implicitly on an operator's machine or in tests.
func applySettings(fs *pflag.FlagSet, path string) error {
	vals, err := config.ReadSettings(path, knownSettings())
	if err != nil {
		return err
	}
	if v, ok := vals["FORCE_REGENERATE"]; ok && strings.TrimSpace(v) != "" && v != "false" {
		return usagef("%s sets FORCE_REGENERATE=%s: a settings file applies to every run, and this one would replace the fleet's CA each time; give FORCE_REGENERATE=true for the one run instead", path, v)
	}
	for k, v := range vals {
		if _, set := os.LookupEnv(k); !set {
			os.Setenv(k, v)
		}
	}
	for _, s := range settingVars {
		f := fs.Lookup(s.flag)
		if f == nil || f.Changed {
			continue
		}
		for _, name := range s.vars {
			v, set := os.LookupEnv(name)
			if !set {
				continue
			}
			if err := f.Value.Set(v); err != nil {
				return usagef("%s=%q (from the environment or %s): %v", name, v, path, err)
			}
			break
		}
	}
	return nil
}

// settingsFlag registers --settings FILE.
func settingsFlag(fs *pflag.FlagSet, p *string) {
	fs.StringVar(p, "settings", "", fmt.Sprintf("read settings from FILE first, as the service does (%s on a packaged node): VAR=value lines; a flag or an environment variable overrides it", config.DefaultSettingsFile))
}
