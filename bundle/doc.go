// Package bundle reads and writes the files morango carries between devices:
// bundles, which carry records, and manifests, which say what a device
// already holds. docs/bundle-format.md specifies both byte by byte; the
// files in testdata/golden are its test vectors.
//
// A bundle is a header (canonical JSON: profile, sender, certificate chain,
// filter, counters, counts per model), a body of independent zstd chunks of
// records, and a trailer: the SHA-256 of everything before it and an RSA
// signature of the same bytes. Writer and Reader stream: they hold a few
// chunks in memory, whatever the number of records.
//
// Writing a bundle:
//
//	w, err := bundle.NewWriter(f, &bundle.Header{…, Counts: counts, Records: n}, key, nil)
//	for _, rec := range records {
//		err = w.Write(rec)
//	}
//	err = w.Close() // fails if fewer records were written than announced
//
// Reading one: the Verify callback sees the header, checks its certificate
// chain and names the key that must have signed it. Records come before
// the trailer is checked, so none may be applied for good before Next
// returns io.EOF, which it does only once the digest and the signature
// verify:
//
//	r, err := bundle.NewReader(bufio.NewReader(f), &bundle.ReaderOptions{
//		Verify: func(h *bundle.Header) (*rsa.PublicKey, error) { return trustedKey(h.Chain) },
//	})
//	for {
//		rec, err := r.Next()
//		if err == io.EOF {
//			break // verified
//		}
//		…
//	}
//
// Errors wrap one of the sentinels (ErrBadMagic, ErrTruncated, ErrMalformed,
// ErrHashMismatch, ErrBadSignature, …), so that a damaged file is told from
// a forged one. WriteFile writes a file atomically through an FS, which
// tests replace to make a stick fail on purpose; Inspect describes a file
// without a database.
package bundle
