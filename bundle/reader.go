package bundle

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"

	"github.com/klauspost/compress/zstd"
)

// ReaderOptions say how a file's signature is checked. The zero value
// reads nothing: a bundle needs Verify, a manifest VerifyManifest, unless
// Unverified or HeaderOnly is set.
type ReaderOptions struct {
	// Verify is called once, after the bundle header is parsed and before
	// any record is read. It checks the header's certificate chain (trust,
	// scope) and returns the key that must have signed the bundle; an
	// error aborts the read.
	Verify func(h *Header) (*rsa.PublicKey, error)
	// VerifyManifest is Verify for manifests.
	VerifyManifest func(m *Manifest) (*rsa.PublicKey, error)
	// Unverified reads a file whatever its digest and signature, for
	// diagnostics: the verify callback may be nil, and its error does not
	// abort the read. The reader then reports the outcome through
	// Reader.Verified instead of failing. Structural errors still fail.
	Unverified bool
	// HeaderOnly reads the header and nothing else: nothing is verified,
	// no callback is called, and Next fails. It serves to decide whether
	// and how to read a file.
	HeaderOnly bool
}

// Reader reads a bundle as a stream of records. Its records are not
// trustworthy until Next has returned io.EOF: the digest and the signature
// are checked at the end of the file, and any failure there is returned by
// Next instead of io.EOF.
type Reader struct {
	src     source
	version int
	header  *Header
	fsic    counters // the header's FSIC as read, decoded once the file is verified
	key     *rsa.PublicKey
	opts    ReaderOptions

	dec         *zstd.Decoder
	comp, plain []byte
	rd          recordDecoder
	left        uint32 // records left in the current chunk
	announced   uint32 // records the current chunk announces

	seen      map[string]int64
	total     int64
	verified  error // the outcome of the checks of the trailer
	verifyErr error // the Verify callback's error, in an unverified read
	err       error
	done      bool

	// statistics for Inspect
	chunks                   int
	compressed, uncompressed int64
	digest                   []byte
	partitions               map[string]int64 // counted only if non-nil

	// onChunk, if set, sees every decompressed chunk (tests).
	onChunk func(plain []byte)
}

// NewReader reads the start of a bundle from r: magic, version and header.
// Unless opts asks for an unverified or header-only read, it then calls
// opts.Verify for the key the bundle must be signed with. r is read
// exactly up to the end of the bundle; wrap it in a bufio.Reader if small
// reads are costly.
func NewReader(r io.Reader, opts *ReaderOptions) (*Reader, error) {
	var o ReaderOptions
	if opts != nil {
		o = *opts
	}
	if o.Verify == nil && !o.Unverified && !o.HeaderOnly {
		return nil, errors.New("read bundle: no Verify function to name the signer's key")
	}
	br := &Reader{src: source{r: r, h: sha256.New()}, opts: o, verified: ErrUnverified}
	version, raw, err := br.src.preamble(bundleMagic, "bundle")
	if err != nil {
		return nil, err
	}
	br.version = version
	h, c, err := decodeHeader(raw)
	if err != nil {
		return nil, fmt.Errorf("bundle %w", err)
	}
	br.header, br.fsic = h, c
	br.seen = make(map[string]int64, len(h.Counts))
	if o.HeaderOnly {
		return br, nil
	}
	if o.Verify != nil {
		key, err := callVerify("bundle", func() (*rsa.PublicKey, error) { return o.Verify(h) })
		switch {
		case err == nil:
			br.key = key
		case o.Unverified:
			br.verifyErr = err
		default:
			return nil, err
		}
	}
	return br, nil
}

func callVerify(kind string, verify func() (*rsa.PublicKey, error)) (*rsa.PublicKey, error) {
	key, err := verify()
	if err == nil && key == nil {
		err = errors.New("no key")
	}
	if err != nil {
		return nil, fmt.Errorf("%s signer: %w: %w", kind, ErrUnverified, err)
	}
	return key, nil
}

// Header returns the bundle's header. The caller must not change it.
func (r *Reader) Header() *Header { return r.header }

// Version returns the file's format version.
func (r *Reader) Version() int { return r.version }

// Verified reports the checks of the trailer: nil once Next has returned
// io.EOF and the digest and signature are both valid; otherwise an error
// wrapping ErrUnverified (not checked, or not yet), ErrHashMismatch or
// ErrBadSignature. Only an Unverified read reaches io.EOF with a non-nil
// Verified.
func (r *Reader) Verified() error {
	if !r.done {
		return fmt.Errorf("bundle not read to its end: %w", ErrUnverified)
	}
	return r.verified
}

// Next returns the next record, or io.EOF after the last one once the
// digest and signature are verified. The record is the caller's to keep.
// After an error, Next returns the same error.
func (r *Reader) Next() (*Record, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.done {
		return nil, io.EOF
	}
	if r.opts.HeaderOnly {
		return nil, errors.New("bundle reader opened for its header only")
	}
	for r.left == 0 {
		end, err := r.chunk()
		if err != nil {
			return nil, r.fail(err)
		}
		if end {
			if err := r.finish(); err != nil {
				return nil, r.fail(err)
			}
			return nil, io.EOF
		}
	}
	if r.rd.off == len(r.rd.buf) {
		return nil, r.fail(fmt.Errorf("bundle chunk %d: holds %d records, announces %d: %w", r.chunks, r.announced-r.left, r.announced, ErrCountMismatch))
	}
	rec := new(Record)
	if err := r.rd.next(rec); err != nil {
		return nil, r.fail(fmt.Errorf("bundle chunk %d: %w", r.chunks, err))
	}
	r.left--
	r.total++
	r.seen[rec.ModelName]++
	if r.seen[rec.ModelName] > r.header.Counts[rec.ModelName] {
		return nil, r.fail(fmt.Errorf("bundle chunk %d: more records of model %q than the header's %d: %w",
			r.chunks, short(rec.ModelName), r.header.Counts[rec.ModelName], ErrCountMismatch))
	}
	if r.partitions != nil {
		r.partitions[rec.Partition]++
	}
	if r.left == 0 && r.rd.off != len(r.rd.buf) {
		return nil, r.fail(r.leftover())
	}
	return rec, nil
}

func (r *Reader) fail(err error) error {
	r.err = err
	putDecoder(r.dec)
	r.dec = nil
	return err
}

// chunk reads the next chunk header and, unless it is the end chunk, the
// chunk's frame, which it decompresses.
func (r *Reader) chunk() (end bool, err error) {
	n := r.chunks + 1
	var b [12]byte
	if err := r.src.full(b[:], "chunk header"); err != nil {
		return false, fmt.Errorf("bundle chunk %d: %w", n, err)
	}
	c := binary.BigEndian.Uint32(b[0:])
	u := binary.BigEndian.Uint32(b[4:])
	count := binary.BigEndian.Uint32(b[8:])
	switch {
	case c == 0 && u == 0 && count == 0:
		return true, nil
	case u > MaxChunkSize:
		return false, fmt.Errorf("bundle chunk %d: %d bytes uncompressed (at most %d): %w", n, u, MaxChunkSize, ErrTooLarge)
	case uint64(c) > maxCompressed(u):
		return false, fmt.Errorf("bundle chunk %d: %d bytes compressed for %d uncompressed: %w", n, c, u, ErrTooLarge)
	case u == 0 || count == 0:
		return false, fmt.Errorf("bundle chunk %d: empty chunk (%d bytes, %d records): %w", n, u, count, ErrMalformed)
	case count > u/minRecordSize:
		return false, fmt.Errorf("bundle chunk %d: %d records cannot fit in %d bytes: %w", n, count, u, ErrCountMismatch)
	}
	r.comp, err = r.src.grow(r.comp, int(c), "frame")
	if err != nil {
		return false, fmt.Errorf("bundle chunk %d: %w", n, err)
	}
	if err := checkFrame(r.comp, u); err != nil {
		return false, fmt.Errorf("bundle chunk %d: %w", n, err)
	}
	if r.dec == nil {
		if r.dec, err = getDecoder(); err != nil {
			return false, fmt.Errorf("zstd decoder: %w", err)
		}
	}
	if cap(r.plain) < int(u) {
		r.plain = make([]byte, 0, u)
	}
	out, err := decompress(r.dec, r.comp, r.plain[:0:u], u)
	if err != nil {
		return false, fmt.Errorf("bundle chunk %d: %w", n, err)
	}
	r.chunks = n
	r.compressed += int64(c)
	r.uncompressed += int64(u)
	r.rd.buf, r.rd.off, r.left, r.announced = out, 0, count, count
	if r.onChunk != nil {
		r.onChunk(out)
	}
	return false, nil
}

// leftover explains the bytes after the last record a chunk announces:
// more records, or garbage.
func (r *Reader) leftover() error {
	more := 0
	var rec Record
	for r.rd.off < len(r.rd.buf) {
		if err := r.rd.next(&rec); err != nil {
			return fmt.Errorf("bundle chunk %d: bytes after its last record: %w", r.chunks, ErrMalformed)
		}
		more++
	}
	return fmt.Errorf("bundle chunk %d: holds %d records, announces %d: %w", r.chunks, int(r.announced)+more, r.announced, ErrCountMismatch)
}

// finish checks the counts of the body, then the trailer.
func (r *Reader) finish() error {
	putDecoder(r.dec)
	r.dec = nil
	models := make([]string, 0, len(r.header.Counts))
	for m := range r.header.Counts {
		models = append(models, m)
	}
	slices.Sort(models)
	for _, m := range models {
		if got, want := r.seen[m], r.header.Counts[m]; got != want {
			return fmt.Errorf("bundle holds %d records of model %q, its header announces %d: %w", got, short(m), want, ErrCountMismatch)
		}
	}
	verified, digest, err := r.src.trailer(r.key)
	if err != nil {
		return fmt.Errorf("bundle %w", err)
	}
	if r.key == nil && r.verifyErr != nil && errors.Is(verified, ErrUnverified) {
		verified = r.verifyErr
	}
	if verified != nil && !r.opts.Unverified {
		return fmt.Errorf("bundle %w", verified)
	}
	// The counters are the one part of the header that may be large: they
	// are decoded once the file is known to come from its signer (or, in
	// an unverified read, once it has been read whole).
	if err := r.header.decodeCounters(r.fsic); err != nil {
		return fmt.Errorf("bundle %w", err)
	}
	r.fsic = counters{}
	r.digest, r.verified, r.done = digest, verified, true
	return nil
}

// ReadManifest reads and verifies a manifest. opts.VerifyManifest names the
// key that must have signed it; with opts.Unverified the manifest is
// returned whatever its digest and signature (Inspect reports them).
func ReadManifest(r io.Reader, opts *ReaderOptions) (*Manifest, error) {
	m, _, _, err := readManifest(r, opts)
	return m, err
}

func readManifest(r io.Reader, opts *ReaderOptions) (m *Manifest, verified error, src *source, err error) {
	var o ReaderOptions
	if opts != nil {
		o = *opts
	}
	if o.VerifyManifest == nil && !o.Unverified && !o.HeaderOnly {
		return nil, nil, nil, errors.New("read manifest: no VerifyManifest function to name the signer's key")
	}
	src = &source{r: r, h: sha256.New()}
	_, raw, err := src.preamble(manifestMagic, "manifest")
	if err != nil {
		return nil, nil, src, err
	}
	m, fsicRaw, err := decodeManifest(raw)
	if err != nil {
		return nil, nil, src, fmt.Errorf("manifest %w", err)
	}
	if o.HeaderOnly {
		return m, ErrUnverified, src, nil
	}
	var key *rsa.PublicKey
	var verifyErr error
	if o.VerifyManifest != nil {
		key, verifyErr = callVerify("manifest", func() (*rsa.PublicKey, error) { return o.VerifyManifest(m) })
		if verifyErr != nil && !o.Unverified {
			return nil, nil, src, verifyErr
		}
	}
	verified, _, err = src.trailer(key)
	if err != nil {
		return nil, nil, src, fmt.Errorf("manifest %w", err)
	}
	if key == nil && verifyErr != nil && errors.Is(verified, ErrUnverified) {
		verified = verifyErr
	}
	if verified != nil && !o.Unverified {
		return nil, nil, src, fmt.Errorf("manifest %w", verified)
	}
	if err := m.decodeCounters(fsicRaw); err != nil {
		return nil, nil, src, fmt.Errorf("manifest %w", err)
	}
	return m, verified, src, nil
}

// source reads a file, hashing what it reads until the trailer.
type source struct {
	r io.Reader
	h hash.Hash
	n int64
}

// full reads len(p) bytes and hashes them.
func (s *source) full(p []byte, what string) error {
	if err := s.raw(p, what); err != nil {
		return err
	}
	s.h.Write(p)
	return nil
}

// raw reads len(p) bytes without hashing them.
func (s *source) raw(p []byte, what string) error {
	n, err := io.ReadFull(s.r, p)
	s.n += int64(n)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return fmt.Errorf("%s: %w", what, ErrTruncated)
	case err != nil:
		return fmt.Errorf("read %s: %w", what, err)
	}
	return nil
}

// grow reads n bytes into buf, reusing its memory, and hashes them. It
// allocates in steps, as the bytes arrive, so a short file claiming a large
// field costs no more memory than it holds.
func (s *source) grow(buf []byte, n int, what string) ([]byte, error) {
	const step = 1 << 20
	buf = buf[:0]
	for len(buf) < n {
		k := min(n-len(buf), step)
		buf = slices.Grow(buf, k)
		if err := s.full(buf[len(buf):len(buf)+k], what); err != nil {
			return nil, err
		}
		buf = buf[:len(buf)+k]
	}
	return buf, nil
}

// preamble reads the magic, the version and the header of a file.
func (s *source) preamble(magic [magicSize]byte, kind string) (version int, header []byte, err error) {
	var b [preambleLen]byte
	n, err := io.ReadFull(s.r, b[:magicSize])
	s.n += int64(n)
	s.h.Write(b[:n])
	switch {
	case !bytes.Equal(b[:n], magic[:n]):
		other, name := manifestMagic, "manifest"
		if magic == manifestMagic {
			other, name = bundleMagic, "bundle"
		}
		if n == magicSize && [magicSize]byte(b[:magicSize]) == other {
			return 0, nil, fmt.Errorf("%s: this is a %s: %w", kind, name, ErrOtherKind)
		}
		return 0, nil, fmt.Errorf("%s: %w", kind, ErrBadMagic)
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return 0, nil, fmt.Errorf("%s magic: %w", kind, ErrTruncated)
	case err != nil:
		return 0, nil, fmt.Errorf("read %s: %w", kind, err)
	}
	if err := s.full(b[magicSize:], kind+" preamble"); err != nil {
		return 0, nil, err
	}
	version = int(binary.BigEndian.Uint16(b[magicSize:]))
	if version != Version {
		return 0, nil, fmt.Errorf("%s format version %d, this program reads version %d: %w", kind, version, Version, ErrUnsupportedVersion)
	}
	size := binary.BigEndian.Uint32(b[magicSize+2:])
	switch {
	case size > MaxHeaderSize:
		return 0, nil, fmt.Errorf("%s header of %d bytes (at most %d): %w", kind, size, MaxHeaderSize, ErrTooLarge)
	case size < 2:
		return 0, nil, fmt.Errorf("%s header of %d bytes: %w", kind, size, ErrMalformed)
	}
	header, err = s.grow(nil, int(size), kind+" header")
	if err != nil {
		return 0, nil, err
	}
	return version, header, nil
}

// trailer reads the trailer and checks that the file ends there. Structural
// errors are returned as err; the outcome of the digest and signature
// checks as verified (ErrUnverified if key is nil).
func (s *source) trailer(key *rsa.PublicKey) (verified error, digest []byte, err error) {
	digest = s.h.Sum(nil)
	var b [sha256.Size + 2]byte
	if err := s.raw(b[:], "trailer"); err != nil {
		return nil, nil, err
	}
	size := binary.BigEndian.Uint16(b[sha256.Size:])
	switch {
	case size == 0:
		return nil, nil, fmt.Errorf("trailer: empty signature: %w", ErrMalformed)
	case size > MaxSignatureSize:
		return nil, nil, fmt.Errorf("trailer: signature of %d bytes (at most %d): %w", size, MaxSignatureSize, ErrTooLarge)
	}
	sig := make([]byte, size)
	if err := s.raw(sig, "signature"); err != nil {
		return nil, nil, err
	}
	var one [1]byte
	switch _, err := io.ReadFull(s.r, one[:]); err {
	case io.EOF:
	case nil:
		return nil, nil, fmt.Errorf("trailer: %w", ErrTrailingData)
	default:
		return nil, nil, fmt.Errorf("read after the signature: %w", err)
	}
	switch {
	case !bytes.Equal(b[:sha256.Size], digest):
		verified = fmt.Errorf("trailer: %w", ErrHashMismatch)
	case key == nil:
		verified = fmt.Errorf("trailer: %w", ErrUnverified)
	default:
		if err := rsa.VerifyPKCS1v15(key, crypto.SHA256, digest, sig); err != nil {
			verified = fmt.Errorf("trailer: %w", ErrBadSignature)
		}
	}
	return verified, digest, nil
}
