package bundle

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"slices"

	"github.com/klauspost/compress/zstd"
)

// Defaults of WriterOptions.
const (
	// DefaultLevel is the compression level, chosen by measurement
	// (docs/bundle-format.md, "Compression level").
	DefaultLevel = zstd.SpeedFastest
	// DefaultChunkSize is the uncompressed size at which a chunk is cut.
	DefaultChunkSize = 1 << 20
	// DefaultConcurrency bounds the chunks compressed at once.
	DefaultConcurrency = 4
)

// WriterOptions tune a Writer. The zero value gives the defaults; the
// options change the compressed bytes, never what a reader reads.
type WriterOptions struct {
	// Level is the zstd level; zero means DefaultLevel.
	Level zstd.EncoderLevel
	// ChunkSize is the uncompressed size at which a chunk is cut; zero
	// means DefaultChunkSize. It is at most MaxChunkSize.
	ChunkSize int
	// Concurrency is the number of chunks compressed at once; zero means
	// DefaultConcurrency or GOMAXPROCS, whichever is smaller. With 1, chunks
	// are compressed on the caller's goroutine.
	Concurrency int
}

// Writer writes a bundle as a stream: Write encodes records into the
// current chunk and compresses full chunks, in parallel, keeping their
// order; Close ends the body and signs the file. It holds at most a few
// chunks in memory, whatever the number of records.
type Writer struct {
	out    hashWriter
	signer crypto.Signer
	pub    *rsa.PublicKey
	enc    *zstd.Encoder

	counts  map[string]int64 // announced by the header
	written map[string]int64 // written so far

	chunkSize int
	conc      int
	cur       *chunk
	pending   []*chunk // being compressed, oldest first
	free      []*chunk
	rec       []byte    // the record being encoded
	rmc       []Counter // scratch to sort record-max counters

	err    error
	closed bool
}

type chunk struct {
	in, out []byte
	n       uint32
	done    chan struct{} // closed when out is ready; nil if compressed in place
}

// NewWriter checks h and writes the start of a bundle to w. The records
// written must match h.Counts and h.Records; signer, whose public key must
// be an RSA key, signs the bundle at Close. opts may be nil.
func NewWriter(w io.Writer, h *Header, signer crypto.Signer, opts *WriterOptions) (*Writer, error) {
	pub, err := signerKey(signer)
	if err != nil {
		return nil, err
	}
	var o WriterOptions
	if opts != nil {
		o = *opts
	}
	if o.Level == 0 {
		o.Level = DefaultLevel
	}
	if o.ChunkSize == 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if o.ChunkSize < 0 || o.ChunkSize > MaxChunkSize {
		return nil, fmt.Errorf("chunk size %d: must be between 1 and %d", o.ChunkSize, MaxChunkSize)
	}
	if o.Concurrency == 0 {
		o.Concurrency = min(DefaultConcurrency, runtime.GOMAXPROCS(0))
	}
	if o.Concurrency < 0 {
		return nil, fmt.Errorf("concurrency %d: must be positive", o.Concurrency)
	}

	n := normalHeader(h)
	if err := checkHeader(&n); err != nil {
		return nil, fmt.Errorf("bundle %w", err)
	}
	raw, err := canonicalJSON(bundleJSON{Kind: kindBundle, Header: n})
	if err != nil {
		return nil, err
	}
	if len(raw) > MaxHeaderSize {
		return nil, fmt.Errorf("bundle header of %d bytes (at most %d): %w", len(raw), MaxHeaderSize, ErrTooLarge)
	}
	enc, err := newEncoder(o.Level, o.Concurrency, chunkWindow(o.ChunkSize))
	if err != nil {
		return nil, err
	}
	bw := &Writer{
		out:       hashWriter{w: w, h: sha256.New()},
		signer:    signer,
		pub:       pub,
		enc:       enc,
		counts:    n.Counts,
		written:   make(map[string]int64, len(n.Counts)),
		chunkSize: o.ChunkSize,
		conc:      o.Concurrency,
		cur:       &chunk{},
	}
	if err := writePreamble(&bw.out, bundleMagic, raw); err != nil {
		enc.Close()
		return nil, err
	}
	return bw, nil
}

// Write adds a record to the bundle. It fails, and the Writer with it, if
// the record cannot be encoded (invalid UTF-8, a negative counter, two
// record-max counters for one instance, more than MaxChunkSize bytes) or
// if the header did not announce it. Write does not keep r.
func (w *Writer) Write(r *Record) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return errors.New("write to a closed bundle writer")
	}
	if w.written[r.ModelName] >= w.counts[r.ModelName] {
		return w.fail(fmt.Errorf("record %s: the header announces %d records of model %q: %w",
			r.ModelUUID, w.counts[r.ModelName], r.ModelName, ErrCountMismatch))
	}
	var err error
	w.rec, err = appendRecord(w.rec[:0], r, &w.rmc)
	if err != nil {
		return w.fail(err)
	}
	if len(w.rec) > MaxChunkSize {
		return w.fail(fmt.Errorf("record %s: encoded in %d bytes (at most %d): %w", r.ModelUUID, len(w.rec), MaxChunkSize, ErrTooLarge))
	}
	if len(w.cur.in)+len(w.rec) > MaxChunkSize {
		if err := w.flush(); err != nil {
			return w.fail(err)
		}
	}
	w.cur.in = append(w.cur.in, w.rec...)
	w.cur.n++
	w.written[r.ModelName]++
	if len(w.cur.in) >= w.chunkSize {
		if err := w.flush(); err != nil {
			return w.fail(err)
		}
	}
	return nil
}

// Close writes the rest of the body, the end chunk and the signed trailer.
// It fails without signing if fewer records were written than the header
// announces. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	defer w.enc.Close()
	if w.err != nil {
		w.wait()
		return w.err
	}
	if err := w.flush(); err != nil {
		return w.fail(err)
	}
	for len(w.pending) > 0 {
		if err := w.emitOldest(); err != nil {
			return w.fail(err)
		}
	}
	models := make([]string, 0, len(w.counts))
	for m := range w.counts {
		models = append(models, m)
	}
	slices.Sort(models)
	for _, m := range models {
		if w.written[m] != w.counts[m] {
			return w.fail(fmt.Errorf("model %q: %d records written, the header announces %d: %w",
				m, w.written[m], w.counts[m], ErrCountMismatch))
		}
	}
	var end [12]byte
	if _, err := w.out.Write(end[:]); err != nil {
		return w.fail(err)
	}
	if err := writeTrailer(w.out.w, w.out.h, w.signer, w.pub); err != nil {
		return w.fail(err)
	}
	return nil
}

// fail makes err the Writer's error and returns it.
func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	w.wait()
	return w.err
}

// wait waits for every chunk being compressed.
func (w *Writer) wait() {
	for _, c := range w.pending {
		if c.done != nil {
			<-c.done
		}
	}
	w.pending = nil
}

// flush hands the current chunk to the compressor, first writing the
// oldest compressed chunk if as many as allowed are in progress.
func (w *Writer) flush() error {
	c := w.cur
	if c.n == 0 {
		return nil
	}
	w.cur = w.newChunk()
	if w.conc == 1 {
		c.out = w.enc.EncodeAll(c.in, c.out[:0])
		return w.emit(c)
	}
	if len(w.pending) >= w.conc {
		if err := w.emitOldest(); err != nil {
			return err
		}
	}
	c.done = make(chan struct{})
	go func(enc *zstd.Encoder) {
		c.out = enc.EncodeAll(c.in, c.out[:0])
		close(c.done)
	}(w.enc)
	w.pending = append(w.pending, c)
	return nil
}

func (w *Writer) emitOldest() error {
	c := w.pending[0]
	w.pending = w.pending[1:]
	<-c.done
	return w.emit(c)
}

// emit writes a compressed chunk and keeps its buffers for reuse.
func (w *Writer) emit(c *chunk) error {
	var hdr [12]byte
	putChunkHeader(hdr[:], uint32(len(c.out)), uint32(len(c.in)), c.n)
	if _, err := w.out.Write(hdr[:]); err != nil {
		return err
	}
	if _, err := w.out.Write(c.out); err != nil {
		return err
	}
	c.in, c.out, c.n, c.done = c.in[:0], c.out[:0], 0, nil
	w.free = append(w.free, c)
	return nil
}

func (w *Writer) newChunk() *chunk {
	if n := len(w.free); n > 0 {
		c := w.free[n-1]
		w.free = w.free[:n-1]
		return c
	}
	return &chunk{in: make([]byte, 0, w.chunkSize+w.chunkSize/8)}
}

// WriteManifest writes a signed manifest to w.
func WriteManifest(w io.Writer, m *Manifest, signer crypto.Signer) error {
	pub, err := signerKey(signer)
	if err != nil {
		return err
	}
	raw, err := encodeManifest(m)
	if err != nil {
		return fmt.Errorf("manifest %w", err)
	}
	if len(raw) > MaxHeaderSize {
		return fmt.Errorf("manifest header of %d bytes (at most %d): %w", len(raw), MaxHeaderSize, ErrTooLarge)
	}
	out := hashWriter{w: w, h: sha256.New()}
	if err := writePreamble(&out, manifestMagic, raw); err != nil {
		return err
	}
	return writeTrailer(w, out.h, signer, pub)
}

func signerKey(signer crypto.Signer) (*rsa.PublicKey, error) {
	if signer == nil {
		return nil, errors.New("no signer")
	}
	pub, ok := signer.Public().(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("signer holds a %T, not an RSA key", signer.Public())
	}
	return pub, nil
}

func writePreamble(w io.Writer, magic [magicSize]byte, header []byte) error {
	var b [preambleLen]byte
	copy(b[:], magic[:])
	binary.BigEndian.PutUint16(b[magicSize:], Version)
	binary.BigEndian.PutUint32(b[magicSize+2:], uint32(len(header)))
	if _, err := w.Write(b[:]); err != nil {
		return err
	}
	_, err := w.Write(header)
	return err
}

// writeTrailer signs what h has hashed and writes the digest and the
// signature to w.
func writeTrailer(w io.Writer, h hash.Hash, signer crypto.Signer, pub *rsa.PublicKey) error {
	digest := h.Sum(nil)
	sig, err := signer.Sign(rand.Reader, digest, crypto.SHA256)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	if len(sig) == 0 || len(sig) > MaxSignatureSize {
		return fmt.Errorf("signature of %d bytes (at most %d): %w", len(sig), MaxSignatureSize, ErrTooLarge)
	}
	// A signer that is not the key it claims, or a faulty one, is caught
	// here rather than by every reader.
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest, sig); err != nil {
		return fmt.Errorf("the signer made a signature its own key rejects: %w", err)
	}
	b := make([]byte, 0, len(digest)+2+len(sig))
	b = append(b, digest...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(sig)))
	b = append(b, sig...)
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write trailer: %w", err)
	}
	return nil
}

// hashWriter hashes what it writes.
type hashWriter struct {
	w io.Writer
	h hash.Hash
}

func (hw *hashWriter) Write(p []byte) (int, error) {
	n, err := hw.w.Write(p)
	hw.h.Write(p[:n])
	if err != nil {
		return n, fmt.Errorf("write: %w", err)
	}
	return n, nil
}

// encoderWindow is the writer's smallest zstd window. A frame never refers
// outside its chunk, and the encoder allocates its history by the window:
// 1 MiB holds a default chunk and keeps the writer's memory small. The
// window depends only on the chunk size (see chunkWindow), so that a
// frame's bytes depend only on the level, the chunk size and the chunk's
// content.
const encoderWindow = 1 << 20

// chunkWindow returns the window of a writer that cuts chunks of size
// bytes: the smallest power of two that holds a chunk, at least
// encoderWindow, so that a record may refer to any record of its chunk.
func chunkWindow(size int) int {
	w := encoderWindow
	for w < size && w < MaxChunkSize {
		w *= 2
	}
	return w
}

// newEncoder returns the encoder of a writer: frames that declare their
// size (single segment) and carry a checksum.
func newEncoder(level zstd.EncoderLevel, concurrency, window int) (*zstd.Encoder, error) {
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(level),
		zstd.WithEncoderConcurrency(concurrency),
		zstd.WithSingleSegment(true),
		zstd.WithEncoderCRC(true),
		zstd.WithWindowSize(window),
	)
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	return enc, nil
}
