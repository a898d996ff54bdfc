package config

import (
	"errors"
	"os"
)

// DefaultHome is $JOBLET_HOME when it is not set.
const DefaultHome = "/opt/joblet"

// EnvOr gives a flag its default from an environment variable, so that a
// flag given on the command line overrides the variable (the spec's rule).
func EnvOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

// Home is $JOBLET_HOME, else DefaultHome.
func Home() string {
	if h := os.Getenv("JOBLET_HOME"); h != "" {
		return h
	}
	return DefaultHome
}

// ErrUsage marks settings that contradict themselves or name an unknown
// value: the caller's input is wrong (commands exit 2 on it).
var ErrUsage = errors.New("invalid settings")

// DefaultPrefix is the secret prefix when SECRETS_PREFIX is not set.
const DefaultPrefix = "joblet"
