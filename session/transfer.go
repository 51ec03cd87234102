package session

import (
	"context"
	"errors"
	"fmt"

	"github.com/morango-sync/morango/certs"
	"github.com/morango-sync/morango/fsic"
	"github.com/morango-sync/morango/ids"
	"github.com/morango-sync/morango/store"
)

// Errors a caller may branch on.
var (
	ErrUntrustedRoot = errors.New("certificate chain does not root in a certificate this device trusts")
	ErrOutsideScope  = errors.New("outside the signer's write scope")
	ErrWrongProfile  = errors.New("bundle is for another profile")
	ErrNoPrivateKey  = errors.New("this device does not hold the certificate's private key")
	ErrNoReadScope   = errors.New("this device holds no certificate that may read this data")
)

// hintError carries a line telling the user what to do.
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }
func (e *hintError) Hint() string  { return e.hint }

func hinted(err error, format string, args ...any) error {
	return &hintError{err: err, hint: fmt.Sprintf(format, args...)}
}

// ExportOptions configure an export.
type ExportOptions struct {
	// CertID names the certificate that signs the transfer; its write scope
	// bounds what is sent. This device must hold its private key.
	CertID string
	// Filter narrows what is sent (partition prefixes); it must lie within
	// the certificate's write scope. Empty: the whole write scope.
	Filter   []string
	Observer Observer
	// SkipEmpty writes nothing when there is nothing to send.
	SkipEmpty bool
}

// ExportResult says what an export sent.
type ExportResult struct {
	TransferID string                `json:"transfer_id"`
	Filter     []string              `json:"filter"`
	Records    int64                 `json:"records"`
	Counts     map[string]int64      `json:"counts"`
	Serialized store.SerializeResult `json:"serialized"`
	// ForPeer is true when the peer's holdings were known, so only what it
	// lacks was sent.
	ForPeer bool `json:"for_peer"`
}

// Export sends, through conn, the records the peer lacks under the
// certificate's write scope (and, when the peer is known, its read scope).
func Export(ctx context.Context, db *store.DB, conn Connection, opts ExportOptions) (*ExportResult, error) {
	signer, chain, scope, err := ownCertificate(ctx, db, opts.CertID)
	if err != nil {
		return nil, err
	}
	filter := certs.Filter(scope.Write)
	if len(opts.Filter) > 0 {
		f := certs.Filter(opts.Filter)
		if !f.IsSubsetOf(filter) {
			return nil, hinted(fmt.Errorf("filter %q: %w of certificate %s", opts.Filter, ErrOutsideScope, opts.CertID),
				"choose partitions inside the certificate's write scope: %q", []string(filter))
		}
		filter = f
	}
	peer, err := conn.Peer(ctx, filter)
	if err != nil {
		return nil, err
	}
	if peer != nil && len(peer.Chain) > 0 {
		// Send only what the peer's certificate may read.
		pc, err := verifyTrusted(ctx, db, peer.Chain)
		if err != nil {
			return nil, fmt.Errorf("peer's certificate: %w", err)
		}
		ps, err := pc.Scope(db.Profile())
		if err != nil {
			return nil, err
		}
		filter = filter.Intersect(ps.Read)
		// A manifest written for fewer partitions than the peer may read
		// (morango manifest --filter) asks for those alone: its holdings
		// say nothing of the others.
		if len(peer.Filter) > 0 {
			filter = filter.Intersect(certs.Filter(peer.Filter))
		}
		// Before anything is serialized: a database restored from a
		// backup takes a new instance, or its next versions would reuse
		// counters the peer holds.
		if peer.Holdings != nil {
			if _, err := renewIfRestored(ctx, db, *peer.Holdings, ps.Read); err != nil {
				return nil, err
			}
		}
	}
	in, err := db.Instance(ctx)
	if err != nil {
		return nil, err
	}
	t := &store.Transfer{ID: ids.Random(), Push: true, Filter: filter, Kind: conn.Kind(), Path: conn.Path()}
	if err := db.CreateTransfer(ctx, t); err != nil {
		return nil, err
	}
	res := &ExportResult{TransferID: t.ID, Filter: filter, ForPeer: peer != nil && peer.Holdings != nil}
	c := &controller{db: db, t: t, obs: opts.Observer}
	var q *store.Queue
	defer func() {
		if q != nil {
			q.Close()
		}
	}()
	out := &Outgoing{TransferID: t.ID, Profile: db.Profile().Name, Instance: in.ID, CertID: signer.ID,
		Chain: chain, Signer: signer, Recipient: peer, Filter: filter}
	err = c.run(ctx, map[Stage]Operation{
		Serializing: func(ctx context.Context, p *Progress) error {
			res.Serialized, err = db.Serialize(ctx)
			return err
		},
		Queuing: func(ctx context.Context, p *Progress) error {
			if q, err = db.OpenQueue(ctx, filter); err != nil {
				return err
			}
			dmc, err := q.MaxCounters(ctx)
			if err != nil {
				return err
			}
			out.FSIC = fsic.Calculate(dmc, filter, nil)
			if peer != nil && peer.Holdings != nil {
				theirs := reframe(*peer.Holdings, filter)
				out.PeerFSIC = &theirs
				diff := fsic.Diff(fsic.Expand(out.FSIC, filter), fsic.Expand(theirs, filter))
				var sels []store.Selector
				for _, s := range fsic.Selectors(diff) {
					sels = append(sels, store.Selector{Partition: s.Partition, Instance: s.Instance, After: s.After})
				}
				if err := q.Select(ctx, sels); err != nil {
					return err
				}
			}
			out.Counts, out.Total, err = q.Counts(ctx)
			t.Total = out.Total
			out.Records = q.Each
			return err
		},
		Transferring: func(ctx context.Context, p *Progress) error {
			if opts.SkipEmpty && out.Total == 0 {
				return nil
			}
			return conn.Send(ctx, out, p)
		},
		Cleanup: func(ctx context.Context, p *Progress) error {
			err := q.Close()
			q = nil
			return err
		},
	})
	if err != nil {
		return nil, err
	}
	res.Records, res.Counts = out.Total, out.Counts
	return res, nil
}

// reframe re-expresses holdings relative to filter: partitions at or below
// a filter prefix become sub, partitions above one become super, others are
// dropped. Holdings computed for another filter can then be compared.
func reframe(v fsic.V2, filter []string) fsic.V2 {
	out := fsic.V2{Super: fsic.Partitions{}, Sub: fsic.Partitions{}}
	add := func(dst fsic.Partitions, p string, cs fsic.Counters) {
		m := dst[p]
		if m == nil {
			m = fsic.Counters{}
			dst[p] = m
		}
		for i, c := range cs {
			if c > m[i] {
				m[i] = c
			}
		}
	}
	for _, half := range []fsic.Partitions{v.Super, v.Sub} {
		for p, cs := range half {
			switch {
			case certs.Filter(filter).Contains(p):
				add(out.Sub, p, cs)
			case isPrefixOfAny(p, filter):
				add(out.Super, p, cs)
			}
		}
	}
	return out
}

func isPrefixOfAny(p string, filter []string) bool {
	for _, f := range filter {
		if len(p) < len(f) && f[:len(p)] == p {
			return true
		}
	}
	return false
}

// ownCertificate loads a certificate this device holds the key of, with its
// chain and scope.
func ownCertificate(ctx context.Context, db *store.DB, id string) (*certs.Certificate, []certs.Link, certs.Scope, error) {
	if id == "" {
		return nil, nil, certs.Scope{}, hinted(errors.New("no certificate given"), "name one with --cert (see 'morango cert list')")
	}
	sc, err := db.Certificate(ctx, id)
	if err != nil {
		return nil, nil, certs.Scope{}, err
	}
	if sc.PrivateKey == "" {
		return nil, nil, certs.Scope{}, hinted(fmt.Errorf("certificate %s: %w", id, ErrNoPrivateKey),
			"use one marked [own key] in 'morango cert list'; if there is none, this device's request was not the one granted: make a new one with 'morango cert request'")
	}
	chain, err := db.Chain(ctx, id)
	if err != nil {
		return nil, nil, certs.Scope{}, err
	}
	verified, err := certs.VerifyChain(chain, db.Profile())
	if err != nil {
		return nil, nil, certs.Scope{}, fmt.Errorf("certificate %s: %w", id, err)
	}
	c := verified[len(verified)-1]
	if c.PrivateKey, err = certs.ParsePrivateKey(sc.PrivateKey); err != nil {
		return nil, nil, certs.Scope{}, fmt.Errorf("certificate %s: private key: %w", id, err)
	}
	scope, err := c.Scope(db.Profile())
	if err != nil {
		return nil, nil, certs.Scope{}, err
	}
	return c, chain, scope, nil
}

// verifyTrusted verifies a chain and checks that its root is trusted here.
// It returns the chain's last certificate.
func verifyTrusted(ctx context.Context, db *store.DB, chain []certs.Link) (*certs.Certificate, error) {
	verified, err := certs.VerifyChain(chain, db.Profile())
	if err != nil {
		return nil, hinted(fmt.Errorf("certificate chain: %w", err),
			"the chain is forged, damaged or for another app: do not trust this file")
	}
	root := verified[0]
	ok, err := db.Trusted(ctx, root.ID)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, hinted(fmt.Errorf("root %s: %w", root.ID, ErrUntrustedRoot),
			"import a certificate of that root first: 'morango cert import --db DB CHAIN.json'")
	}
	return verified[len(verified)-1], nil
}

// readScope returns what this device may read under root: the union of the
// read scopes of the certificates it holds keys for in that root's tree.
func readScope(ctx context.Context, db *store.DB, root string) (certs.Filter, error) {
	scopes, _, err := db.HeldScopes(ctx)
	if err != nil {
		return nil, err
	}
	var read certs.Filter
	for _, s := range scopes {
		if s.Root == root {
			read = append(read, s.Scope.Read...)
		}
	}
	return read, nil
}
