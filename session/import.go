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

// ImportOptions configure an import.
type ImportOptions struct {
	Observer Observer
}

// ImportResult says what an import did.
type ImportResult struct {
	TransferID string              `json:"transfer_id"`
	Sender     string              `json:"sender_instance"`
	SenderCert string              `json:"sender_certificate"`
	Filter     []string            `json:"filter"`
	Resumed    bool                `json:"resumed"`
	Store      *store.ImportResult `json:"result"`
}

// batchSize is the number of records merged per store round trip.
const batchSize = 500

// Import verifies an incoming transfer and applies it. Everything is
// verified before anything is written: the format, the integrity hash, the
// signature, that the signer's chain roots in a certificate this device
// trusts, and that the transfer's filter lies within the signer's write
// scope. Records outside the signer's write scope or outside what this
// device may read are refused and listed. The records are then merged,
// written into the app and recorded in one transaction: an interrupted
// import leaves the database as it was, and running it again completes it.
func Import(ctx context.Context, db *store.DB, conn Connection, opts ImportOptions) (*ImportResult, error) {
	inc, err := conn.Receive(ctx)
	if err != nil {
		return nil, err
	}
	defer inc.Close()
	h := inc.Header()
	if h.Profile != db.Profile().Name {
		return nil, hinted(fmt.Errorf("%w: it carries %q, this database syncs %q", ErrWrongProfile, h.Profile, db.Profile().Name),
			"import it on a device of the %s app", h.Profile)
	}
	applied, err := db.AppliedBundle(ctx, h.TransferID)
	if err != nil {
		return nil, err
	}
	if applied {
		return nil, hinted(fmt.Errorf("transfer %s: %w", h.TransferID, store.ErrAlreadyApplied), "nothing to do: its records are already here")
	}

	// The chain, the signer and its scope are checked before any record is
	// read.
	signer, err := verifyTrusted(ctx, db, h.Chain)
	if err != nil {
		return nil, err
	}
	if signer.ID != h.SenderCert {
		return nil, fmt.Errorf("bundle names signer %s but its chain ends with %s", h.SenderCert, signer.ID)
	}
	sscope, err := signer.Scope(db.Profile())
	if err != nil {
		return nil, err
	}
	filter := certs.Filter(h.Filter)
	if !filter.IsSubsetOf(sscope.Write) {
		return nil, hinted(fmt.Errorf("filter %q: %w (%q)", h.Filter, ErrOutsideScope, []string(sscope.Write)),
			"the bundle claims data its signer may not write; do not import it")
	}
	read, err := readScope(ctx, db, h.Chain[0].ID)
	if err != nil {
		return nil, err
	}
	if len(read) == 0 {
		return nil, hinted(fmt.Errorf("root %s: %w", h.Chain[0].ID, ErrNoReadScope),
			"get a certificate for this device first ('morango cert request' and 'morango cert import')")
	}
	keep := filter.Intersect(read)
	inst, err := db.Instance(ctx)
	if err != nil {
		return nil, err
	}
	me := inst.ID
	trust := func(*IncomingHeader) (*certs.Certificate, error) { return signer, nil }

	res := &ImportResult{TransferID: h.TransferID, Sender: h.SenderInstance, SenderCert: h.SenderCert, Filter: h.Filter}
	t, err := db.ActiveTransfer(ctx, inc.Digest())
	if err != nil {
		return nil, err
	}
	if t != nil {
		res.Resumed = true
	} else {
		t = &store.Transfer{ID: ids.Random(), Filter: h.Filter, Kind: conn.Kind(), Path: conn.Path(), SHA256: inc.Digest()}
		if err := db.CreateTransfer(ctx, t); err != nil {
			return nil, err
		}
	}
	t.Total = h.Total
	c := &controller{db: db, t: t, obs: opts.Observer}
	var im *store.Import
	defer func() {
		if im != nil {
			im.Abort()
		}
	}()
	check := func(r *store.Record) string {
		switch {
		case !filter.Contains(r.Partition):
			return "partition outside the bundle's filter"
		case !sscope.Write.Contains(r.Partition):
			return ErrOutsideScope.Error()
		case !read.Contains(r.Partition):
			return "outside what this device may read"
		}
		if m := db.Profile().Model(r.ModelName); m != nil && m.SourceID != "" {
			if want := ids.Namespaced(ids.RawPartition(r.Partition, r.ID), r.SourceID, r.ModelName); want != r.ID {
				return "id does not match its partition, source id and model"
			}
		} else if !ids.Valid(r.ID) {
			return "id is not 32 lower-case hex digits"
		}
		return ""
	}
	// A failed stage ends the import's transaction before the failure is
	// recorded.
	abort := func(err error) error {
		if err != nil && im != nil {
			im.Abort()
			im, c.persist = nil, nil
		}
		return err
	}
	err = c.run(ctx, map[Stage]Operation{
		// Serializing has no operation of its own: BeginImport serializes
		// the app's changes inside the import's transaction, so an import
		// that fails or is killed leaves the database as it was.
		// The whole transfer is read and verified before anything is
		// applied.
		Transferring: func(ctx context.Context, p *Progress) error {
			var n int64
			return inc.Records(ctx, trust, func(r *store.Record) error {
				n++
				p.Report(n, h.Total, 0)
				return nil
			})
		},
		Dequeuing: func(ctx context.Context, p *Progress) error {
			if im, err = db.BeginImport(ctx, t.ID); err != nil {
				return abort(err)
			}
			c.persist = im.UpdateTransfer
			batch := make([]*store.Record, 0, batchSize)
			var n, outside int64 // outside: refused here for lying outside what is kept
			flush := func() error {
				err := im.Add(ctx, batch)
				batch = batch[:0]
				p.Report(n, h.Total, 0)
				return err
			}
			err := inc.Records(ctx, trust, func(r *store.Record) error {
				n++
				if why := check(r); why != "" {
					if !keep.Contains(r.Partition) {
						outside++
					}
					im.Result().Refuse(r, why)
					return nil
				}
				cp := *r // r is reused by the reader: copy it, history included
				cp.History = append([]store.HistoryEntry(nil), r.History...)
				batch = append(batch, &cp)
				if len(batch) == batchSize {
					return flush()
				}
				return nil
			})
			if err == nil {
				err = flush()
			}
			if err != nil {
				return abort(err)
			}
			// Everything the sender held under what this device kept is
			// now here — unless a record inside it was refused, or the
			// bundle held only what another device lacked: then claiming
			// the sender's counters would hide records this device lacks.
			if im.Result().Refused > outside || (h.RecipientInst != "" && h.RecipientInst != me) {
				return nil
			}
			claims := fsic.Claims(reframe(h.FSIC, keep), keep)
			return abort(im.Claim(ctx, claims))
		},
		Deserializing: func(ctx context.Context, p *Progress) error {
			r, err := im.Finish(ctx, store.Applied{TransferID: h.TransferID, SHA256: inc.Digest(),
				SenderInstance: h.SenderInstance, Records: h.Total})
			if err != nil {
				return abort(err)
			}
			im, c.persist = nil, nil
			res.Store = r
			return nil
		},
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// IsAlreadyApplied reports whether err says a bundle was applied before.
func IsAlreadyApplied(err error) bool { return errors.Is(err, store.ErrAlreadyApplied) }
