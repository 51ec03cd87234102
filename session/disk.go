package session

import (
	"bufio"
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

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
	return &Peer{Instance: m.Instance, CertID: m.CertID, Chain: m.Chain, Holdings: &h}, nil
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
	err := bundle.WriteFile(d.fs(), d.Bundle, func(w io.Writer) error {
		written.w = w
		bw, err := bundle.NewWriter(&written, h, out.Signer.PrivateKey, nil)
		if err != nil {
			return err
		}
		var rec bundle.Record
		err = out.Records(ctx, func(r *store.Record) error {
			toBundle(r, &rec)
			if err := bw.Write(&rec); err != nil {
				return err
			}
			done++
			p.Report(done, out.Total, written.n)
			return ctx.Err()
		})
		if err != nil {
			return err
		}
		return bw.Close()
	})
	if err != nil {
		return err
	}
	p.Report(done, out.Total, written.n)
	// Read back what was written.
	inc, err := d.Receive(ctx)
	if err != nil {
		return hinted(fmt.Errorf("reading back %s: %w", d.Bundle, err), "the stick may be failing: write the bundle again, or to another stick")
	}
	defer inc.Close()
	err = inc.Records(ctx, func(*IncomingHeader) (*certs.Certificate, error) { return out.Signer, nil },
		func(*store.Record) error { return nil })
	if err != nil {
		return hinted(fmt.Errorf("reading back %s: %w", d.Bundle, err), "the stick may be failing: write the bundle again, or to another stick")
	}
	return nil
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
	read   bool // r has been used
}

func (in *diskIncoming) open() error {
	f, err := in.d.fs().Open(in.d.Bundle)
	if err != nil {
		return hinted(fmt.Errorf("open bundle: %w", err), "check the bundle's path")
	}
	// The digest of the whole file names the transfer's content.
	hash := sha256.New()
	if _, err := io.Copy(hash, f); err != nil {
		f.Close()
		return readFailed(in.d.Bundle, err)
	}
	f.Close()
	in.digest = hex.EncodeToString(hash.Sum(nil))
	return in.reopen(nil)
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
		c, err := trust(in.h)
		if err != nil {
			return nil, err
		}
		return c.PublicKey, nil
	}}
	if trust == nil {
		opts.HeaderOnly = true
	}
	r, err := bundle.NewReader(bufio.NewReaderSize(f, 1<<16), opts)
	if err != nil {
		f.Close()
		if !isFormatError(err) {
			return readFailed(in.d.Bundle, err)
		}
		return hinted(fmt.Errorf("bundle %s: %w", in.d.Bundle, err), "the file is damaged or not a bundle: export it again")
	}
	in.f, in.r = f, r
	bh := r.Header()
	in.h = &IncomingHeader{
		TransferID: bh.TransferID, Profile: bh.Profile, SenderInstance: bh.SenderInstance, SenderCert: bh.SenderCert,
		Chain: bh.Chain, RecipientInst: bh.RecipientInstance, RecipientCert: bh.RecipientCert,
		Filter: bh.Filter, FSIC: bh.FSIC, Counts: bh.Counts, Total: bh.Records,
	}
	return nil
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
			return nil
		}
		if err != nil {
			if !isFormatError(err) {
				return readFailed(in.d.Bundle, err)
			}
			return hinted(fmt.Errorf("bundle %s: %w", in.d.Bundle, err), "the file is damaged or was tampered with: do not import it; export it again")
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
