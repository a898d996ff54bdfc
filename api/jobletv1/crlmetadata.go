package jobletv1

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
)
