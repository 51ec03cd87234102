package certs

import "errors"

// The kinds of failure of parsing, certificate checks, chain verification and
// grants. An error from parsing, Check or VerifyChain wraps exactly one of
// them, with context (for a chain: the link and the certificate id); test
// with errors.Is.
var (
	// ErrIDInvalid: a certificate's id is not the hash of its public key,
	// profile and salt, or the id outside a link differs from the one inside
	// its serialized text (the original's CertificateIDInvalid).
	ErrIDInvalid = errors.New("certificate id invalid")
	// ErrSignatureInvalid: a signature does not verify with the expected key:
	// the certificate's own for a root, its parent's otherwise (the
	// original's CertificateSignatureInvalid).
	ErrSignatureInvalid = errors.New("signature invalid")
	// ErrRootScopeInvalid: a root's read or write filter holds a prefix that
	// does not start with the root's id (the original's
	// CertificateRootScopeInvalid).
	ErrRootScopeInvalid = errors.New("root scope outside the root's namespace")
	// ErrScopeNotSubset: a certificate's scope is wider than its parent's
	// (the original's CertificateScopeNotSubset).
	ErrScopeNotSubset = errors.New("scope not a subset of the parent's")
	// ErrProfileInvalid: a certificate's profile differs from its parent's
	// (the original's CertificateProfileInvalid).
	ErrProfileInvalid = errors.New("profile differs from the parent's")
	// ErrChainBroken: a chain does not start at a root, a link's parent is
	// not the link before it, or the last link is not the expected one.
	ErrChainBroken = errors.New("certificate chain broken")
	// ErrUnknownScopeDefinition: a certificate or request names a scope
	// definition the caller's definitions do not hold.
	ErrUnknownScopeDefinition = errors.New("unknown scope definition")
	// ErrMalformed: input that does not parse or is out of bounds: JSON,
	// keys, base64, sizes, scope parameters.
	ErrMalformed = errors.New("malformed")
	// ErrNoPrivateKey: signing needs a private key the certificate does not
	// carry.
	ErrNoPrivateKey = errors.New("no private key")
)
