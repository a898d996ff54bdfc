package main

import (
	"bytes"
	"io"
	"testing"
)

func TestEscapeControls(t *testing.T) {
	for in, want := range map[string]string{
		"plain text\n\tend":       "plain text\n\tend",
		"\x1b[2J\x1b]0;pwned\x07": `\x1b[2J\x1b]0;pwned\x07`,
		"a\rb\x00c\x7f":           `a\x0db\x00c\x7f`,
		"csi \u009b31m, é stays":  `csi \u009b31m, é stays`,
	} {
		if got := string(escapeControls(nil, []byte(in), false)); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
	if got := string(escapeControls(nil, []byte("a\tb\nc"), true)); got != `a\x09b\x0ac` {
		t.Errorf("a table field keeps no tab or newline: %q", got)
	}
}

// A C1 character split across two writes is still escaped; a writer that
// does not escape passes every byte.
func TestCtlWriter(t *testing.T) {
	var b bytes.Buffer
	w := &ctlWriter{w: &b, escape: true}
	w.Write([]byte("x\xc2"))
	w.Write([]byte("\x9b1m\x1b"))
	w.Flush()
	if b.String() != `x\u009b1m\x1b` {
		t.Fatalf("got %q", b.String())
	}
	b.Reset()
	raw := &ctlWriter{w: &b}
	raw.Write([]byte("\x1b[31m"))
	if b.String() != "\x1b[31m" {
		t.Fatalf("raw: %q", b.String())
	}
}

// Escaped only to a terminal and without --raw.
func TestEscapesOnlyToATerminal(t *testing.T) {
	var out bytes.Buffer
	for _, tc := range []struct {
		terminal, raw bool
		want          string
	}{
		{true, false, `rm \x1b[2J`},
		{true, true, "rm \x1b[2J"},
		{false, false, "rm \x1b[2J"},
	} {
		a := &app{out: &out, raw: tc.raw, terminal: func(io.Writer) bool { return tc.terminal }}
		if got := a.clean("rm \x1b[2J"); got != tc.want {
			t.Errorf("terminal %v raw %v: %q, want %q", tc.terminal, tc.raw, got, tc.want)
		}
	}
	if isTerminal(&out) {
		t.Error("a buffer is not a terminal")
	}
}
