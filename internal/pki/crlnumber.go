package pki

import (
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

var oidCRLNumber = asn1.ObjectIdentifier{2, 5, 29, 20}

// PeekCRLNumber reads a PEM CRL's number without parsing its entries or
// checking its signature: it steps over the list of revoked certificates
// by its length, so its cost does not grow with the list (parsing a CRL
// near the 256 KiB a node takes costs as much as checking its signature
// several times). For a first, cheap check only: whatever is then taken
// is parsed and verified in full. nil without a number.
func PeekCRLNumber(data []byte) (*big.Int, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "X509 CRL" {
		return nil, errors.New("not a PEM CRL")
	}
	bad := errors.New("malformed CRL")
	in := cryptobyte.String(block.Bytes)
	var crl, tbs cryptobyte.String
	if !in.ReadASN1(&crl, cbasn1.SEQUENCE) || !crl.ReadASN1(&tbs, cbasn1.SEQUENCE) {
		return nil, bad
	}
	if tbs.PeekASN1Tag(cbasn1.INTEGER) && !tbs.SkipASN1(cbasn1.INTEGER) { // version
		return nil, bad
	}
	for range 2 { // the signature algorithm, then the issuer
		if !tbs.SkipASN1(cbasn1.SEQUENCE) {
			return nil, bad
		}
	}
	skipTime := func() bool {
		switch {
		case tbs.PeekASN1Tag(cbasn1.UTCTime):
			return tbs.SkipASN1(cbasn1.UTCTime)
		case tbs.PeekASN1Tag(cbasn1.GeneralizedTime):
			return tbs.SkipASN1(cbasn1.GeneralizedTime)
		}
		return false
	}
	if !skipTime() { // thisUpdate
		return nil, bad
	}
	if (tbs.PeekASN1Tag(cbasn1.UTCTime) || tbs.PeekASN1Tag(cbasn1.GeneralizedTime)) && !skipTime() { // nextUpdate
		return nil, bad
	}
	if tbs.PeekASN1Tag(cbasn1.SEQUENCE) && !tbs.SkipASN1(cbasn1.SEQUENCE) { // revokedCertificates
		return nil, bad
	}
	var exts cryptobyte.String
	var present bool
	if !tbs.ReadOptionalASN1(&exts, &present, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return nil, bad
	}
	if !present {
		return nil, nil
	}
	var list cryptobyte.String
	if !exts.ReadASN1(&list, cbasn1.SEQUENCE) {
		return nil, bad
	}
	for !list.Empty() {
		var ext, val cryptobyte.String
		var oid asn1.ObjectIdentifier
		if !list.ReadASN1(&ext, cbasn1.SEQUENCE) || !ext.ReadASN1ObjectIdentifier(&oid) {
			return nil, bad
		}
		if ext.PeekASN1Tag(cbasn1.BOOLEAN) && !ext.SkipASN1(cbasn1.BOOLEAN) {
			return nil, bad
		}
		if !ext.ReadASN1(&val, cbasn1.OCTET_STRING) {
			return nil, bad
		}
		if oid.Equal(oidCRLNumber) {
			n := new(big.Int)
			if !val.ReadASN1Integer(n) {
				return nil, bad
			}
			return n, nil
		}
	}
	return nil, nil
}
