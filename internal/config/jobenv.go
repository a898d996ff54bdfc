package config

import (
	"fmt"
	"strings"
)

// CheckJobEnv refuses a job environment whose meaning would depend on the
// program reading it: a name given twice (glibc's getenv takes the first,
// most shells the last) or not a name a shell can use. The node applies it
// to every request; rnx applies it before sending one, so a typo is a usage
// error on the client.
func CheckJobEnv(env []string) error {
	seen := make(map[string]bool, len(env))
	for _, kv := range env {
		k, _, ok := strings.Cut(kv, "=")
		switch {
		case !ok:
			return fmt.Errorf("environment entry %q has no '=': give KEY=VALUE", kv)
		case !isEnvName(k):
			return fmt.Errorf("environment name %q is not a shell name: use letters, digits and '_', not starting with a digit", k)
		case strings.ContainsRune(kv, 0):
			return fmt.Errorf("environment variable %s holds a NUL byte, which no process can receive", k)
		case seen[k]:
			return fmt.Errorf("environment variable %s is given twice: give it once", k)
		}
		seen[k] = true
	}
	return nil
}

func isEnvName(s string) bool {
	for i, r := range s {
		letter := r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		if !letter && (i == 0 || r < '0' || r > '9') {
			return false
		}
	}
	return s != ""
}
