package bundle

import (
	"errors"
	"fmt"
)

// Errors a reader returns, each wrapped with what was being read. They are
// distinct so that a damaged file is never reported as a forgery, and a
// forgery never hides behind a parse error. docs/bundle-format.md lists
// which case gives which.
var (
	// ErrBadMagic means the file is not a bundle (or not a manifest, when a
	// manifest was expected).
	ErrBadMagic = errors.New("not a morango file of this kind")
	// ErrOtherKind is ErrBadMagic for a manifest where a bundle was
	// expected, or a bundle where a manifest was.
	ErrOtherKind = fmt.Errorf("%w", ErrBadMagic)
	// ErrUnsupportedVersion means the file has a format version this
	// reader does not know: a newer program wrote it.
	ErrUnsupportedVersion = errors.New("unsupported format version")
	// ErrTruncated means the file ended in the middle of a field: an
	// incomplete copy or a damaged drive.
	ErrTruncated = errors.New("file is truncated")
	// ErrMalformed means a field breaks the format: a non-canonical or
	// invalid header, a bad chunk or record encoding, a damaged frame.
	ErrMalformed = errors.New("malformed file")
	// ErrTooLarge means a size read from the file exceeds its limit.
	ErrTooLarge = errors.New("size limit exceeded")
	// ErrCountMismatch means the records in the body differ from the
	// counts the header or a chunk announces.
	ErrCountMismatch = errors.New("record counts do not match")
	// ErrHashMismatch means the stored SHA-256 differs from that of the
	// bytes read: the file was changed or damaged after it was signed.
	ErrHashMismatch = errors.New("digest does not match the content")
	// ErrBadSignature means the signature does not verify with the key the
	// caller named.
	ErrBadSignature = errors.New("signature is not valid")
	// ErrTrailingData means bytes follow the signature.
	ErrTrailingData = errors.New("unexpected data after the signature")
	// ErrUnverified means a file was read without checking its signature,
	// because no key was given. Only reads that ask for it (Unverified,
	// Inspect) report it instead of failing.
	ErrUnverified = errors.New("signature not checked")
)
