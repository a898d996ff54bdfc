package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// rnx runs the real command tree in-process with no config anywhere.
func rnx(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	t.Setenv("RNX_CONFIG", "/nonexistent/rnx-config.yml")
	t.Setenv("HOME", t.TempDir())
	t.Chdir(t.TempDir())
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelpAndVersionNeedNoConfig(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"job", "--help"}, {"help", "job", "run"}, {"job", "run", "--help"}, {"config", "refresh", "-h"}} {
		code, out, errOut := rnx(t, args...)
		if code != 0 || !strings.Contains(out, "Usage:") || errOut != "" {
			t.Errorf("rnx %q: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, out, errOut)
		}
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, out, errOut := rnx(t, args...)
		if code != 0 || !strings.HasPrefix(out, "rnx ") || !strings.Contains(out, "commit") || errOut != "" {
			t.Errorf("rnx %q: exit %d %q %q", args, code, out, errOut)
		}
	}
	// A command that needs the config says so, as a failure (1), not a usage error.
	if code, _, errOut := rnx(t, "job", "list"); code != 1 || !strings.Contains(errOut, "rnx config") {
		t.Errorf("job list without a config: exit %d %q", code, errOut)
	}
}

func TestBadUsageIsExit2WithShortUsage(t *testing.T) {
	cases := []struct {
		args     []string
		msg, use string
	}{
		{[]string{"job", "run", "--foo", "true"}, "unknown flag: --foo", "Usage: rnx job run [flags] [--] COMMAND [ARG...]\nRun 'rnx job run --help' for more.\n"},
		{[]string{"job", "list", "extra"}, `job list takes no arguments, got ["extra"]`, "Run 'rnx job list --help'"},
		{[]string{"job", "status"}, "job status needs exactly one job ID", "Usage: rnx job status ID [flags]"},
		{[]string{"job", "log", "a", "b"}, "job log needs exactly one job ID", "Run 'rnx job log --help'"},
		{[]string{"job", "stop", "a", "--bogus"}, "unknown flag: --bogus", "Run 'rnx job stop --help'"},
		{[]string{"info", "x"}, "info takes no arguments", "Run 'rnx info --help'"},
		{[]string{"nodes", "--json", "x"}, "nodes takes no arguments", "Run 'rnx nodes --help'"},
		{[]string{"version", "x"}, "version takes no arguments", "Run 'rnx version --help'"},
		{[]string{"job", "run"}, "job run needs a command", "Run 'rnx job run --help'"},
		{[]string{"job", "run", "--json", "--follow", "true"}, "--json and --follow cannot be combined", "Run 'rnx job run --help'"},
		{[]string{"job", "run", "--max-memory", "lots", "true"}, `--max-memory: "lots" is not a size`, "Run 'rnx job run --help'"},
		{[]string{"job", "run", "--env", "FOO", "true"}, `--env "FOO": give KEY=VALUE`, "Run 'rnx job run --help'"},
		{[]string{"job", "run", "--env", "1FOO=x", "true"}, `--env: environment name "1FOO" is not a shell name`, "Run 'rnx job run --help'"},
		{[]string{"job", "run", "-e", "A=1", "-e", "A=2", "true"}, "--env: environment variable A is given twice", "Run 'rnx job run --help'"},
		{[]string{"job", "run", "--folow", "true"}, "unknown flag: --folow; did you mean --follow?", "Run 'rnx job run --help'"},
		{[]string{"info", "--jsn"}, "unknown flag: --jsn; did you mean --json?", "Run 'rnx info --help'"},
		{[]string{"job", "run", "--max-cpu", "-5", "true"}, "--max-cpu and --max-procs take a positive number", "Run 'rnx job run --help'"},
		{[]string{"job", "list", "--limit", "-1"}, "--limit -1", "Run 'rnx job list --help'"},
		{[]string{"--timeout", "soon", "info"}, `invalid argument "soon"`, "Run 'rnx info --help'"},
		{[]string{"jbo"}, `unknown command "jbo" for "rnx"; did you mean job?`, "Usage: rnx COMMAND"},
		{[]string{"job", "lsit"}, `unknown command "lsit" for "rnx job"; did you mean list?`, "Run 'rnx job --help'"},
		{[]string{"job"}, "rnx job needs a command: run, list, status, log, stop", "Usage: rnx job COMMAND"},
		{[]string{}, "rnx needs a command", "Run 'rnx --help'"},
		{[]string{"config"}, "rnx config needs a command: init, refresh", "Usage: rnx config COMMAND"},
		{[]string{"config", "init", "--role", "boss", "--address", "lb:1"}, "boss", "Run 'rnx config init --help'"},
		{[]string{"config", "init", "--role", "reader"}, "--address is required", "Run 'rnx config init --help'"},
		{[]string{"config", "refresh", "--role", "boss"}, "boss", "Run 'rnx config refresh --help'"},
	}
	for _, c := range cases {
		code, out, errOut := rnx(t, c.args...)
		if code != 2 || out != "" || !strings.HasPrefix(errOut, "rnx: ") || !strings.Contains(errOut, c.msg) || !strings.Contains(errOut, c.use) {
			t.Errorf("rnx %q: exit %d\nstdout:\n%s\nstderr:\n%s", c.args, code, out, errOut)
		}
		// Short: the message, the command's usage line, where to read more.
		if n := strings.Count(errOut, "\n"); n > 4 || strings.Contains(errOut, "Flags:") {
			t.Errorf("rnx %q: usage error is %d lines long:\n%s", c.args, n, errOut)
		}
	}
}

// job run stops parsing its own flags at the job's command: everything
// from the command on is the job's, with or without "--".
func TestJobRunArguments(t *testing.T) {
	cases := []struct {
		args           []string
		follow, asJSON bool
		node           string
		job            []string
	}{
		{[]string{"sh", "-c", "echo hi"}, false, false, "", []string{"sh", "-c", "echo hi"}},
		{[]string{"--follow", "--", "sh", "-c", "exit 3"}, true, false, "", []string{"sh", "-c", "exit 3"}},
		{[]string{"-f", "sh", "-c", "echo -f --json"}, true, false, "", []string{"sh", "-c", "echo -f --json"}},
		{[]string{"--node", "dev", "--json", "ls", "--help", "-l"}, false, true, "dev", []string{"ls", "--help", "-l"}},
		{[]string{"--", "--weird-binary", "-x"}, false, false, "", []string{"--weird-binary", "-x"}},
		{[]string{"--node=dev", "-f", "--timeout", "5s", "env", "--node", "x"}, true, false, "dev", []string{"env", "--node", "x"}},
	}
	for _, c := range cases {
		a := &app{}
		root := a.rootCmd()
		var got []string
		var follow, asJSON bool
		run, _, err := root.Find([]string{"job", "run"})
		if err != nil {
			t.Fatal(err)
		}
		run.RunE = func(cmd *cobra.Command, args []string) error {
			got = args
			follow, _ = cmd.Flags().GetBool("follow")
			asJSON, _ = cmd.Flags().GetBool("json")
			return nil
		}
		// Shared flags before the verbs work as well as after them.
		root.SetArgs(append([]string{"--config", "/x.yml", "job", "--node", "other", "run"}, c.args...))
		if err := root.Execute(); err != nil {
			t.Fatalf("%q: %v", c.args, err)
		}
		if c.node == "" {
			c.node = "other"
		}
		if a.cfgPath != "/x.yml" {
			t.Errorf("%q: config %q", c.args, a.cfgPath)
		}
		if strings.Join(got, "\x00") != strings.Join(c.job, "\x00") || follow != c.follow || asJSON != c.asJSON || a.nodeName != c.node {
			t.Errorf("%q: job %q follow=%v json=%v node=%q", c.args, got, follow, asJSON, a.nodeName)
		}
	}
}

func TestCompletionScripts(t *testing.T) {
	for shell, want := range map[string]string{"bash": "# bash completion V2 for rnx", "zsh": "#compdef rnx", "fish": "complete -c rnx"} {
		code, out, errOut := rnx(t, "completion", shell)
		if code != 0 || !strings.Contains(out, want) || errOut != "" {
			t.Errorf("completion %s: exit %d, stderr %q, stdout starts %q", shell, code, errOut, out[:min(len(out), 80)])
		}
	}
	// Completing subcommands runs the real tree, without a config.
	code, out, _ := rnx(t, "__complete", "job", "l")
	if code != 0 || !strings.Contains(out, "list") || !strings.Contains(out, "log") {
		t.Errorf("__complete job l: %d %q", code, out)
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{"echo": "echo", "-c": "-c", "echo a b": "'echo a b'", "": "''",
		"it's": `'it'\''s'`, "$HOME": "'$HOME'", "a=b,c:d/e.f@g%h+i": "a=b,c:d/e.f@g%h+i", "x;y": "'x;y'"} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// Help lists only the global flags a command uses.
func TestHelpListsUsedFlagsOnly(t *testing.T) {
	for _, c := range []struct {
		args       []string
		has, hasNt []string
	}{
		{[]string{"version", "--help"}, nil, []string{"--timeout", "--node", "--config"}},
		{[]string{"nodes", "--help"}, []string{"--config", "--json"}, []string{"--timeout", "--node"}},
		{[]string{"config", "refresh", "--help"}, []string{"--config", "--role"}, []string{"--timeout", "--node"}},
		{[]string{"help", "completion", "bash"}, nil, []string{"--timeout", "--node"}},
		{[]string{"info", "--help"}, []string{"--config", "--node", "--timeout"}, nil},
		{[]string{"job", "run", "--help"}, []string{"--config", "--node", "--timeout", "--follow"}, nil},
	} {
		code, out, _ := rnx(t, c.args...)
		if code != 0 {
			t.Fatalf("rnx %q: exit %d", c.args, code)
		}
		for _, f := range c.has {
			if !strings.Contains(out, f+" ") {
				t.Errorf("rnx %q does not list %s:\n%s", c.args, f, out)
			}
		}
		for _, f := range c.hasNt {
			if strings.Contains(out, f+" ") {
				t.Errorf("rnx %q lists %s, which it does not use:\n%s", c.args, f, out)
			}
		}
	}
}
