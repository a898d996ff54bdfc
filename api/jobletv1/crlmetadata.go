package jobletv1

import "math/big"

// Metadata by which a client learns a node's newer CRL without a call of
// its own (the node's side: internal/server/crlgate.go; the client's:
// internal/client/learn.go). Written by hand, not generated.
const (
	// CRLNumberKey carries the number of a CRL in hex, or "none": the
	// client's held one in a request, the node's in a response header.
	CRLNumberKey = "joblet-crl-number"
	// CRLTrailerKey carries the node's CRL (PEM) in the trailer of a call
	// it refused because the client's CRL is older.
	CRLTrailerKey = "joblet-crl-bin"
	// CRLNewerPrefix starts the message of such a refusal
	// (FailedPrecondition).
	CRLNewerPrefix = "newer CRL: "
	// TrustVersionKey carries, next to CRLNumberKey in a response header
	// (and in the trailer of a newer-CRL refusal), the version of the
	// signed trust state the node holds, in decimal; absent when it holds
	// none. A client holding a newer one offers it (internal/client/
	// learn.go): the client compares, so the node's per-call gate reads
	// nothing more than the CRL number.
	TrustVersionKey = "joblet-trust-version"
)

// FormatCRLNumber is how a CRL number travels in CRLNumberKey: hex, or
// "none" for a client without a CRL.
func FormatCRLNumber(n *big.Int) string {
	if n == nil {
		return "none"
	}
	return n.Text(16)
}

// ParseCRLNumber reads a number as FormatCRLNumber writes it; "none" is
// nil. ok is false for anything else.
func ParseCRLNumber(s string) (n *big.Int, ok bool) {
	if s == "none" {
		return nil, true
	}
	return new(big.Int).SetString(s, 16)
}
