package session

import (
	"bufio"
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/morango-sync/morango/bundle"
	"github.com/morango-sync/morango/certs"
	"github.com/morango-sync/morango/store"
)

// DiskConnection carries transfers as bundle files, on a USB stick or any
// folder: an export writes one bundle (atomically, then reads it back and
// verifies it); an import reads one. A manifest, when given, says what the
// peer holds, so that only what it lacks is written.
type DiskConnection struct {
	// FS is the filesystem the bundle lives on; nil means the OS's.
	FS bundle.FS
	// Bundle is the path of the bundle file to write or read.
	Bundle string
	// Manifest, if set, is the path of the peer's manifest (exports only).
	Manifest string
}

var _ Connection = (*DiskConnection)(nil)

func (d *DiskConnection) fs() bundle.FS {
	if d.FS == nil {
		return bundle.OSFS{}
	}
	return d.FS
}

// Kind returns "disk".
func (d *DiskConnection) Kind() string { return "disk" }

// Path returns the bundle's path.
func (d *DiskConnection) Path() string { return d.Bundle }

// Peer reads the manifest, if any. Its signature is checked against the key
// of the last certificate of its own chain; the caller checks that chain.
func (d *DiskConnection) Peer(ctx context.Context, filter []string) (*Peer, error) {
	if d.Manifest == "" {
		return nil, nil
	}
	f, err := d.fs().Open(d.Manifest)
	if err != nil {
		return nil, hinted(fmt.Errorf("open manifest: %w", err), "check the path given with --for")
	}
	defer f.Close()
	m, err := bundle.ReadManifest(bufio.NewReader(f), &bundle.ReaderOptions{
		VerifyManifest: func(m *bundle.Manifest) (*rsa.PublicKey, error) { return chainKey(m.Chain) },
	})
	if err != nil {
		return nil, hinted(fmt.Errorf("manifest %s: %w", d.Manifest, err), "ask the other device for a fresh manifest ('morango manifest')")
	}
	h := m.FSIC
	return &Peer{Instance: m.Instance, CertID: m.CertID, Chain: m.Chain, Holdings: &h, Filter: m.Filter}, nil
}

// chainKey returns the public key of the last certificate of a chain after
// checking the links parse; the chain's trust is checked by the caller.
func chainKey(chain []certs.Link) (*rsa.PublicKey, error) {
	if len(chain) == 0 {
		return nil, errors.New("no certificate chain")
	}
	last := chain[len(chain)-1]
	c, err := certs.Deserialize(last.Serialized, last.Signature)
	if err != nil {
		return nil, err
	}
	return c.PublicKey, nil
}

// Send writes the bundle atomically, then reads it back and checks it: a
// cheap stick can fail silently.
func (d *DiskConnection) Send(ctx context.Context, out *Outgoing, p *Progress) error {
	h := &bundle.Header{
		Profile:        out.Profile,
		TransferID:     out.TransferID,
		Created:        time.Now().UTC().Format(time.RFC3339),
		SenderInstance: out.Instance,
		SenderCert:     out.CertID,
		Chain:          out.Chain,
		Filter:         out.Filter,
		FSIC:           out.FSIC,
		PeerFSIC:       out.PeerFSIC,
		Counts:         out.Counts,
		Records:        out.Total,
	}
	if r := out.Recipient; r != nil {
		h.RecipientInstance, h.RecipientCert = r.Instance, r.CertID
	}
	var done int64
	var written countingWriter
	err := bundle.WriteFileChecked(d.fs(), d.Bundle, func(w io.Writer) error {
		written.w = w
		o := exportWriterOptions
		if out.Total <= smallExport {
			// Its records fit in one small chunk: a large chunk's buffer
			// and window would only cost memory to allocate and clear.
			o.ChunkSize = 1 << 20
		}
		bw, err := bundle.NewWriter(&written, h, out.Signer.PrivateKey, &o)
		if err != nil {
			return err
		}
		return pipeRecords(ctx, out.Records, func(r *store.Record, rec *bundle.Record) error {
			toBundle(r, rec)
			if err := bw.Write(rec); err != nil {
				return err
			}
			done++
			p.Report(done, out.Total, written.n)
			return nil
		}, bw.Close)
	}, func(tmp string) error {
		p.Report(done, out.Total, written.n)
		// Read back what was written before it takes the bundle's name:
		// a damaged file never replaces a bundle that was there.
		back := &DiskConnection{FS: d.FS, Bundle: tmp}
		inc, err := back.Receive(ctx)
		if err == nil {
			err = inc.Records(ctx, func(*IncomingHeader) (*certs.Certificate, error) { return out.Signer, nil },
				func(*store.Record) error { return nil })
			inc.Close()
		}
		if err != nil {
			return hinted(fmt.Errorf("reading back %s: %w", d.Bundle, err), "the stick may be failing: write the bundle again, or to another stick")
		}
		return nil
	})
	return err
}

// exportWriterOptions are the bundle writer's settings for exports, chosen
// by measurement on the sample school app (docs/performance.md): 8 MiB
// chunks, so that a frame finds more of the ids, partitions and keys its
// records repeat (the zstd window is as large as a chunk), at
// SpeedBetterCompression (about zstd level 7), which makes bundles about
// 15% smaller than SpeedFastest for about twice its CPU time. One
// compressor, on the goroutine that encodes records while the store is read
// on another (pipeRecords): a compressor's history and tables grow with its
// window, so one is what keeps an export's memory small. A reader holds one
// chunk.
var exportWriterOptions = bundle.WriterOptions{Level: zstd.SpeedBetterCompression, ChunkSize: 8 << 20, Concurrency: 1}

// smallExport is the most records an export writes in 1 MiB chunks; the
// sample school app's records are under 500 bytes each.
const smallExport = 2048

// pipeBatch is the number of records handed at once from the goroutine
// that reads the store to the one that writes the bundle, and pipeBytes
// the most memory (recordBytes) a batch holds whatever its number of
// records: a record's data may be large, and so may its history.
const (
	pipeBatch = 256
	pipeBytes = 2 << 20
)

// pipeRecords reads the records of each on the caller's goroutine and
// hands them, in order, to write on another goroutine, so that reading
// the store and encoding and compressing the bundle use two cores with one
// compressor: a few batches of records are in flight, and one chunk. end
// runs on the writing goroutine after the last record. The first error of
// either side stops both.
func pipeRecords(ctx context.Context, each func(context.Context, func(*store.Record) error) error,
	write func(*store.Record, *bundle.Record) error, end func() error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []store.Record, 4)
	free := make(chan []store.Record, 6)
	result := make(chan error, 1)
	go func() {
		var rec bundle.Record
		var err error
		for batch := range batches {
			for i := 0; i < len(batch) && err == nil; i++ {
				err = write(&batch[i], &rec)
			}
			if err != nil {
				cancel() // the reading side stops at its next record
			}
			clear(batch) // a free batch holds no record's memory
			select {
			case free <- batch[:0]:
			default:
			}
		}
		if err == nil {
			err = end()
		}
		result <- err
	}()
	var batch []store.Record
	size := 0
	send := func() {
		batches <- batch
		size = 0
		select {
		case batch = <-free:
		default:
			batch = make([]store.Record, 0, pipeBatch)
		}
	}
	batch = make([]store.Record, 0, pipeBatch)
	err := each(ctx, func(r *store.Record) error {
		cp := *r // r is reused by the reader: copy it, history included
		cp.History = append([]store.HistoryEntry(nil), r.History...)
		batch = append(batch, cp)
		size += recordBytes(&cp)
		if len(batch) == pipeBatch || size >= pipeBytes {
			send()
		}
		return ctx.Err()
	})
	if err == nil && len(batch) > 0 {
		send()
	}
	close(batches)
	werr := <-result
	if werr != nil {
		return werr // the writing side's error is the cause of a cancellation
	}
	return err
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Receive opens the bundle and reads its header.
func (d *DiskConnection) Receive(ctx context.Context) (Incoming, error) {
	in := &diskIncoming{d: d}
	if err := in.open(); err != nil {
		return nil, err
	}
	return in, nil
}

type diskIncoming struct {
	d      *DiskConnection
	f      io.ReadCloser
	r      *bundle.Reader
	h      *IncomingHeader
	digest string
	hash   hash.Hash // of the bytes r has read from f
}

func (in *diskIncoming) open() error {
	// One read takes the header and the digest of the whole file, which
	// names the transfer's content.
	if err := in.reopen(nil); err != nil {
		return err
	}
	if _, err := io.Copy(in.hash, in.f); err != nil {
		in.Close()
		return readFailed(in.d.Bundle, err)
	}
	in.digest = hex.EncodeToString(in.hash.Sum(nil))
	return in.Close()
}

// reopen opens the file and its reader; trust may be nil while only the
// header is needed.
func (in *diskIncoming) reopen(trust Trust) error {
	if in.f != nil {
		in.f.Close()
	}
	f, err := in.d.fs().Open(in.d.Bundle)
	if err != nil {
		return hinted(fmt.Errorf("open bundle: %w", err), "check the bundle's path")
	}
	opts := &bundle.ReaderOptions{Verify: func(h *bundle.Header) (*rsa.PublicKey, error) {
		if trust == nil {
			return nil, errors.New("no trust decision yet")
		}
		// The header being read, which the digest check at the end ties
		// to the one the import decided on.
		c, err := trust(incomingHeader(h))
		if err != nil {
			return nil, err
		}
		return c.PublicKey, nil
	}}
	if trust == nil {
		opts.HeaderOnly = true
	}
	// Each read hashes what it reads: the file is opened again for each
	// pass, and each must read the file whose digest names the transfer.
	in.hash = sha256.New()
	r, err := bundle.NewReader(bufio.NewReaderSize(io.TeeReader(f, in.hash), 1<<16), opts)
	if err != nil {
		f.Close()
		if !isFormatError(err) {
			return readFailed(in.d.Bundle, err)
		}
		if errors.Is(err, bundle.ErrOtherKind) {
			return hinted(fmt.Errorf("bundle %s: %w", in.d.Bundle, err),
				"a manifest tells a peer what to send ('morango export --for' reads it); import a .bundle file, or run 'morango exchange' on the stick's folder")
		}
		return hinted(fmt.Errorf("bundle %s: %w", in.d.Bundle, err), "the file is damaged or not a bundle; the device that wrote it writes it anew at its next exchange (or export)")
	}
	in.f, in.r = f, r
	if in.h == nil {
		in.h = incomingHeader(r.Header())
	}
	return nil
}

func incomingHeader(bh *bundle.Header) *IncomingHeader {
	return &IncomingHeader{
		TransferID: bh.TransferID, Profile: bh.Profile, SenderInstance: bh.SenderInstance, SenderCert: bh.SenderCert,
		Chain: bh.Chain, RecipientInst: bh.RecipientInstance, RecipientCert: bh.RecipientCert,
		Filter: bh.Filter, FSIC: bh.FSIC, Counts: bh.Counts, Total: bh.Records,
	}
}

func (in *diskIncoming) Header() *IncomingHeader { return in.h }
func (in *diskIncoming) Digest() string          { return in.digest }

func (in *diskIncoming) Close() error {
	if in.f == nil {
		return nil
	}
	err := in.f.Close()
	in.f = nil
	return err
}

// Records reads the bundle from the start: the reader verifies the hash and
// the signature when it reaches the end, before it reports success.
func (in *diskIncoming) Records(ctx context.Context, trust Trust, fn func(*store.Record) error) error {
	if err := in.reopen(trust); err != nil {
		return err
	}
	var rec store.Record
	for {
		br, err := in.r.Next()
		if err == io.EOF {
			if err := in.sameFile(); err != nil {
				return err
			}
			// The counters are decoded only from a verified file.
			in.h.FSIC, in.h.PeerFSIC = in.r.Header().FSIC, in.r.Header().PeerFSIC
			return nil
		}
		if err != nil {
			if !isFormatError(err) {
				return readFailed(in.d.Bundle, err)
			}
			return hinted(fmt.Errorf("bundle %s: %w", in.d.Bundle, err), "the file is damaged or was tampered with, and nothing of it was imported; the device that wrote it writes it anew at its next exchange (or export)")
		}
		fromBundle(br, &rec)
		if err := fn(&rec); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// sameFile checks, at the end of a read, that the bytes read are those
// whose digest was taken when the bundle was opened: a file replaced or
// still being copied meanwhile verifies on its own when its signer is the
// same, but it is not the transfer this import records as applied.
func (in *diskIncoming) sameFile() error {
	if _, err := io.Copy(in.hash, in.f); err != nil {
		return readFailed(in.d.Bundle, err)
	}
	if hex.EncodeToString(in.hash.Sum(nil)) != in.digest {
		return hinted(fmt.Errorf("bundle %s changed while it was being read", in.d.Bundle),
			"nothing was applied: if the file is still being copied, wait until the copy ends; then import it again")
	}
	return nil
}

func toBundle(r *store.Record, b *bundle.Record) {
	*b = bundle.Record{
		ModelUUID: r.ID, Profile: r.Profile, ModelName: r.ModelName, Partition: r.Partition, SourceID: r.SourceID,
		Serialized: r.Serialized, Deleted: r.Deleted, HardDeleted: r.HardDeleted,
		LastSavedInstance: r.LastSavedInstance, LastSavedCounter: r.LastSavedCounter,
		ConflictingSerializedData: r.Conflicting, SelfRefFK: r.SelfRefFK, RMC: b.RMC[:0],
	}
	for _, h := range r.History {
		b.RMC = append(b.RMC, bundle.Counter{Instance: h.Instance, Counter: h.Counter})
	}
}

func fromBundle(b *bundle.Record, r *store.Record) {
	hist := r.History[:0]
	for _, c := range b.RMC {
		hist = append(hist, store.HistoryEntry{Instance: c.Instance, Counter: c.Counter})
	}
	*r = store.Record{
		ID: b.ModelUUID, Profile: b.Profile, ModelName: b.ModelName, Partition: b.Partition, SourceID: b.SourceID,
		Serialized: b.Serialized, Deleted: b.Deleted, HardDeleted: b.HardDeleted,
		LastSavedInstance: b.LastSavedInstance, LastSavedCounter: b.LastSavedCounter,
		Conflicting: b.ConflictingSerializedData, SelfRefFK: b.SelfRefFK, History: hist,
	}
}

// isFormatError reports whether err is the bundle's fault (damaged, forged,
// too large) rather than the device's.
func isFormatError(err error) bool {
	for _, e := range []error{bundle.ErrBadMagic, bundle.ErrUnsupportedVersion, bundle.ErrTruncated, bundle.ErrMalformed,
		bundle.ErrTooLarge, bundle.ErrCountMismatch, bundle.ErrHashMismatch, bundle.ErrBadSignature, bundle.ErrTrailingData,
		bundle.ErrUnverified} {
		if errors.Is(err, e) {
			return true
		}
	}
	var pe *fs.PathError
	return !errors.As(err, &pe) && !errors.Is(err, io.ErrUnexpectedEOF)
}

// readFailed reports a bundle the device could not read.
func readFailed(path string, err error) error {
	return hinted(fmt.Errorf("read bundle %s: %w", path, err),
		"reading the stick failed (was it pulled out?); nothing was written: put it back and run the import again")
}
