package bundle

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// Signature states reported by Inspect.
const (
	SignatureValid     = "valid"
	SignatureInvalid   = "invalid"
	SignatureUnchecked = "unchecked"
)

// Stats describes a bundle or manifest file, for `morango inspect`.
type Stats struct {
	// Kind is "bundle" or "manifest".
	Kind string `json:"kind"`
	// Version is the format version.
	Version int `json:"version"`
	// Header is a bundle's header; Manifest a manifest's.
	Header   *Header   `json:"header,omitempty"`
	Manifest *Manifest `json:"manifest,omitempty"`
	// Models and Partitions count a bundle's records by model name and by
	// partition, as found in its body.
	Models     map[string]int64 `json:"models,omitempty"`
	Partitions map[string]int64 `json:"partitions,omitempty"`
	// Records and Chunks count a bundle's records and chunks.
	Records int64 `json:"records"`
	Chunks  int   `json:"chunks"`
	// Compressed and Uncompressed are the sizes of a bundle's chunks as
	// stored and once decompressed, and Ratio the second over the first.
	Compressed   int64   `json:"compressed_bytes"`
	Uncompressed int64   `json:"uncompressed_bytes"`
	Ratio        float64 `json:"ratio"`
	// Size is the size of the file.
	Size int64 `json:"size"`
	// Digest is the SHA-256 of the signed bytes, in hex.
	Digest string `json:"digest"`
	// DigestValid reports whether the stored digest matches.
	DigestValid bool `json:"digest_valid"`
	// Signature is SignatureValid, SignatureInvalid, or SignatureUnchecked
	// when no key was given (or the digest was already wrong).
	Signature string `json:"signature"`
	// Problem explains a signature that is not valid.
	Problem string `json:"problem,omitempty"`
}

// Inspect reads a whole bundle or manifest, telling the two by their magic,
// and describes it. It needs no database. The signature is checked only if
// opts names a key (Verify, VerifyManifest); a digest or signature that
// fails is reported in the Stats, not as an error. A file that is not well
// formed gives an error. opts may be nil.
func Inspect(r io.Reader, opts *ReaderOptions) (*Stats, error) {
	var o ReaderOptions
	if opts != nil {
		o = *opts
	}
	o.Unverified, o.HeaderOnly = true, false
	br := bufio.NewReader(r)
	magic, err := br.Peek(magicSize)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read file: %w", err)
	}
	if len(magic) == magicSize && [magicSize]byte(magic) == manifestMagic {
		m, verified, src, err := readManifest(br, &o)
		if err != nil {
			return nil, err
		}
		s := &Stats{Kind: kindManifest, Version: Version, Manifest: m, Size: src.n}
		s.verification(verified, src.h.Sum(nil))
		return s, nil
	}
	rd, err := NewReader(br, &o)
	if err != nil {
		return nil, err
	}
	rd.partitions = make(map[string]int64)
	for {
		if _, err := rd.Next(); err == io.EOF {
			break
		} else if err != nil {
			return nil, err
		}
	}
	s := &Stats{
		Kind:         kindBundle,
		Version:      rd.version,
		Header:       rd.header,
		Models:       rd.seen,
		Partitions:   rd.partitions,
		Records:      rd.total,
		Chunks:       rd.chunks,
		Compressed:   rd.compressed,
		Uncompressed: rd.uncompressed,
		Size:         rd.src.n,
	}
	if s.Compressed > 0 {
		s.Ratio = float64(s.Uncompressed) / float64(s.Compressed)
	}
	s.verification(rd.verified, rd.digest)
	return s, nil
}

func (s *Stats) verification(verified error, digest []byte) {
	s.Digest = hex.EncodeToString(digest)
	s.DigestValid = !errors.Is(verified, ErrHashMismatch)
	switch {
	case verified == nil:
		s.Signature = SignatureValid
	case errors.Is(verified, ErrBadSignature):
		s.Signature, s.Problem = SignatureInvalid, verified.Error()
	default:
		s.Signature, s.Problem = SignatureUnchecked, verified.Error()
	}
}
