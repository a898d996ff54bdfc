package config

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
)

// DefaultSettingsFile is the packaged node's settings file: the unit's
// EnvironmentFile, and what `joblet certs bootstrap --settings` reads.
const DefaultSettingsFile = "/etc/default/joblet"

var settingLine = regexp.MustCompile(`^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$`)

// ReadSettings reads a settings file in the subset of syntax that systemd's
// EnvironmentFile and sh agree on: VAR=value lines, blank lines and #
// comments, a value optionally in single or double quotes. Anything else is
// an error naming the line, so that a file the unit would read differently
// is refused rather than half applied. A variable not in known is refused
// too, naming its line and the list: the file is read into the
// environment, where a stray AWS_ENDPOINT_URL or HTTPS_PROXY would redirect
// the run's store traffic.
func ReadSettings(path string, known []string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: settings file: %w", ErrUsage, err)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		m := settingLine.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("%w: %s line %d: %q is not VAR=value (no spaces around '=')", ErrUsage, path, n, line)
		}
		if !slices.Contains(known, m[1]) {
			return nil, fmt.Errorf("%w: %s line %d: %s is not a joblet setting; a settings file may set only %s", ErrUsage, path, n, m[1], strings.Join(known, ", "))
		}
		v := m[2]
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		} else if strings.ContainsAny(v, "\"'$`\\") {
			return nil, fmt.Errorf("%w: %s line %d: %s's value has quotes, '$', '`' or '\\' that systemd and sh read differently: write it plain or in one pair of quotes", ErrUsage, path, n, m[1])
		}
		out[m[1]] = v
	}
	return out, sc.Err()
}
