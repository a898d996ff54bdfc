package main

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// A job's output and arguments are the job's, not rnx's: printed raw to a
// terminal, an escape sequence in them could retitle the window, rewrite
// what was printed before, or (on some terminals) answer back as typed
// input. To a terminal rnx escapes control characters (C0 but newline and
// tab, DEL, C1) as \xNN; with --raw, or when the output is not a terminal
// (a pipe, a file), the bytes pass unchanged.

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// escapes reports whether output to w is escaped.
func (a *app) escapes(w io.Writer) bool {
	return !a.raw && a.terminal(w)
}

// display is w as job output goes to it: escaped to a terminal.
func (a *app) display(w io.Writer) *ctlWriter {
	return &ctlWriter{w: w, escape: a.escapes(w)}
}

// clean is s as rnx prints a job's field to its stdout.
func (a *app) clean(s string) string {
	if !a.escapes(a.out) {
		return s
	}
	return string(escapeControls(nil, []byte(s), true))
}

// ctlWriter escapes control characters when escape is set. A chunk may end
// inside the two bytes of a C1 character (0xC2 0x80-0x9F): that 0xC2 is
// held until the next write, or Flush.
type ctlWriter struct {
	w      io.Writer
	escape bool
	held   []byte
}

func (c *ctlWriter) Write(p []byte) (int, error) {
	if !c.escape {
		return c.w.Write(p)
	}
	in := append(c.held, p...)
	c.held = nil
	if n := len(in); n > 0 && in[n-1] == 0xC2 {
		c.held, in = []byte{0xC2}, in[:n-1]
	}
	if _, err := c.w.Write(escapeControls(nil, in, false)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes a held byte.
func (c *ctlWriter) Flush() error {
	if len(c.held) == 0 {
		return nil
	}
	_, err := c.w.Write(escapeControls(nil, c.held, true))
	c.held = nil
	return err
}

// escapeControls appends p to dst with control characters as \xNN (C1
// characters as \u00NN); newline and tab stay unless all is set (a field
// printed on one line of a table).
func escapeControls(dst, p []byte, all bool) []byte {
	for i := 0; i < len(p); i++ {
		b := p[i]
		switch {
		case (b == '\n' || b == '\t') && !all:
			dst = append(dst, b)
		case b < 0x20 || b == 0x7f:
			dst = fmt.Appendf(dst, `\x%02x`, b)
		case b == 0xC2 && i+1 < len(p) && p[i+1] >= 0x80 && p[i+1] <= 0x9f:
			dst = fmt.Appendf(dst, `\u%04x`, p[i+1])
			i++
		case b == 0xC2 && i+1 == len(p):
			dst = append(dst, `\xc2`...)
		default:
			dst = append(dst, b)
		}
	}
	return dst
}
