package session

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"unsafe"

	"github.com/morango-sync/morango/certs"
	"github.com/morango-sync/morango/fsic"
	"github.com/morango-sync/morango/ids"
	"github.com/morango-sync/morango/merge"
	"github.com/morango-sync/morango/profile"
	"github.com/morango-sync/morango/store"
)

// ImportOptions configure an import.
type ImportOptions struct {
	Observer Observer
}

// ImportResult says what an import did.
type ImportResult struct {
	TransferID string   `json:"transfer_id"`
	Sender     string   `json:"sender_instance"`
	SenderCert string   `json:"sender_certificate"`
	Filter     []string `json:"filter"`
	Resumed    bool     `json:"resumed"`
	// ForOther is the device the bundle was written for, when another:
	// what this device may read of it is applied, but the sender's
	// counters are not claimed (the bundle held only what that device
	// lacked).
	ForOther string              `json:"for_other_instance,omitempty"`
	Store    *store.ImportResult `json:"result"`
}

// batchSize is the number of records merged per store round trip, and
// batchBytes the most bytes of record data (recordBytes) a batch holds before it is
// merged, whatever its number of records: an import holds a few batches,
// so its memory stays bounded by these, not by the size of the records.
const (
	batchSize  = 500
	batchBytes = 16 << 20
)

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
		// An import killed after its transaction committed left its
		// transfer session active: it is finished.
		if err := finishApplied(ctx, db, inc.Digest()); err != nil {
			return nil, err
		}
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
	// A record of a model this device's profile lacks (an app's newer
	// version) is kept, to be passed on, only from a signer that may write
	// all this device reads: its data cannot be checked here, and the
	// devices it is passed to check it against what this device may write.
	// From a narrower signer it could take an id or, relayed, land in a
	// partition its writer may not write.
	relayable := read.IsSubsetOf(sscope.Write)

	res := &ImportResult{TransferID: h.TransferID, Sender: h.SenderInstance, SenderCert: h.SenderCert, Filter: h.Filter}
	if h.RecipientInst != "" && h.RecipientInst != me {
		res.ForOther = h.RecipientInst
	}
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
		m := db.Profile().Model(r.ModelName)
		if m == nil && !relayable {
			return fmt.Sprintf("model %q is not in this device's profile, so its data cannot be checked against what the signer may write (a device with the app's newer version takes it)", r.ModelName)
		}
		// Deleted records too: a record of a model holds its id under a
		// partition the model's rows can have, or it could take the id
		// of a row of another partition (a deleted user record under the
		// signer's own partition, with a user's id it does not hold yet).
		if m != nil && !m.FitsPartition(r.ID, r.Partition) {
			return fmt.Sprintf("partition is not one the model's template %q gives a row with this id", m.Partition)
		}
		if m != nil && m.SourceID != "" {
			if want := ids.Namespaced(ids.RawPartition(r.Partition, r.ID), r.SourceID, r.ModelName); want != r.ID {
				return "id does not match its partition, source id and model"
			}
		} else if !ids.Valid(r.ID) {
			return "id is not 32 lower-case hex digits"
		}
		if m != nil {
			// Versions the signer relays from devices that may write
			// where their data puts them: merged only if this device
			// holds them already (store.Record.Unvouched).
			r.UnvouchedWhy, r.Unvouched = fieldsOutside(m, r, sscope.Write)
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
			// The bundle's counters are verified now. Before anything is
			// serialized: a database restored from a backup takes a new
			// instance, or its next versions would reuse counters the
			// sender holds.
			renewed, err := renewIfRestored(ctx, db, inc.Header().FSIC, filter)
			if err != nil {
				return err
			}
			if renewed && h.RecipientInst != "" {
				// A bundle addressed to the former instance, computed
				// against what the file held before the restore, holds
				// what it lacked then, not what this one lacks: it is
				// imported as one for another device (its counters are
				// not claimed). One computed against the restored file's
				// own manifest is this file's.
				before, err := computedBeforeRestore(ctx, db, inc.Header().PeerFSIC, filter)
				if err != nil {
					return err
				}
				if before {
					in, err := db.Instance(ctx)
					if err != nil {
						return err
					}
					me = in.ID
					if h.RecipientInst != me {
						res.ForOther = h.RecipientInst
					}
				}
			}
			// Many pending app changes are serialized in short
			// transactions first: the import's transaction holds the
			// write lock until it commits.
			if _, err := db.SerializeFirst(ctx); err != nil {
				return err
			}
			if im, err = db.BeginImport(ctx, t.ID); err != nil {
				return abort(err)
			}
			if err := im.Expect(ctx, h.Total); err != nil {
				return abort(err)
			}
			c.persist = im.UpdateTransfer
			var n, outside int64 // outside: refused here for lying outside what is kept
			recs := make([]*store.Record, 0, batchSize)
			err = readAhead(ctx, func(ctx context.Context, fn func(*store.Record) error) error {
				return inc.Records(ctx, trust, fn)
			}, check, func(batch []checked) error {
				recs = recs[:0]
				for i := range batch {
					n++
					if why := batch[i].why; why != "" {
						if !keep.Contains(batch[i].rec.Partition) {
							outside++
						}
						im.Result().Refuse(&batch[i].rec, why)
						im.Result().Received++
						continue
					}
					recs = append(recs, &batch[i].rec)
				}
				err := im.Add(ctx, recs)
				p.Report(n, h.Total, 0)
				return err
			})
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

// checked is an incoming record and why it is refused ("" if it is not).
type checked struct {
	rec store.Record
	why string
}

// readAhead reads records with each on another goroutine, checking each
// with check, and hands them in batches of batchSize, in order, to apply
// on the caller's goroutine: reading, decompressing and checking the
// bundle overlap with the store's work. A few batches are in flight. The
// first error of either side stops both; the reading side's error (a
// bundle that fails to verify at its end) is returned unless applying
// failed first.
func readAhead(ctx context.Context, each func(context.Context, func(*store.Record) error) error,
	check func(*store.Record) string, apply func([]checked) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []checked, 2)
	free := make(chan []checked, 4)
	read := make(chan error, 1)
	go func() {
		defer close(batches)
		var err error
		// The records come from a file nobody vouches for until it is
		// read: a defect in a check that a record trips ends this import
		// with an error (its transaction rolled back), not the process.
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("an internal error stopped the import while it checked the bundle's records, and nothing was imported; please report it with the bundle: %v\n%s", p, debug.Stack())
			}
			read <- err
		}()
		batch := make([]checked, 0, batchSize)
		size := 0 // bytes of record data in batch
		err = each(ctx, func(r *store.Record) error {
			c := checked{rec: *r} // r is reused by the reader: copy it, history included
			c.rec.History = append([]store.HistoryEntry(nil), r.History...)
			c.why = check(&c.rec)
			batch = append(batch, c)
			size += recordBytes(r)
			if len(batch) == batchSize || size >= batchBytes {
				size = 0
				select {
				case batches <- batch:
				case <-ctx.Done():
					return ctx.Err()
				}
				select {
				case batch = <-free:
				default:
					batch = make([]checked, 0, batchSize)
				}
			}
			return nil
		})
		if err == nil && len(batch) > 0 {
			select {
			case batches <- batch:
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
	}()
	var err error
	for batch := range batches {
		if err == nil {
			if err = apply(batch); err != nil {
				cancel()
			}
		}
		clear(batch)
		select {
		case free <- batch[:0]:
		default:
		}
	}
	if rerr := <-read; err == nil {
		err = rerr
	}
	return err
}

// historyEntryBytes is what an entry of a record's history costs in
// memory besides its instance's bytes: a store.HistoryEntry.
const historyEntryBytes = int(unsafe.Sizeof(store.HistoryEntry{}))

// recordBytes is the memory a record read from a bundle holds that a
// batch counts: its data, its conflicting versions and its history. A
// record of a few bytes of data may carry the longest history a record may
// have (bundle.MaxRecordCounters entries), which takes more memory decoded
// than its data.
func recordBytes(r *store.Record) int {
	n := len(r.Serialized) + len(r.Conflicting) + len(r.History)*historyEntryBytes
	for _, h := range r.History {
		n += len(h.Instance)
	}
	return n
}

// finishApplied marks the active transfer sessions of a bundle whose records
// are applied as finished: an import killed between its commit and its
// cleanup leaves one. The sessions a bundle may have are few; each is
// recorded as completed at its cleanup stage.
func finishApplied(ctx context.Context, db *store.DB, digest string) error {
	for range 1000 {
		t, err := db.ActiveTransfer(ctx, digest)
		if err != nil || t == nil {
			return err
		}
		t.Stage, t.Status, t.Error, t.Active = Cleanup.String(), string(Completed), "", false
		if err := db.UpdateTransfer(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

// fieldsOutside says why the data of some of a record's live versions
// (the head and the conflicting versions it carries) puts it in a
// partition the signer may not write, or in none, and lists those
// versions; those fields are what reach the app table, whatever partition
// the record claims. It returns "" and nil if they are all within write.
func fieldsOutside(m *profile.Model, r *store.Record, write certs.Filter) (string, []store.HistoryEntry) {
	outside := func(serialized string) string {
		get, why := dataFields(serialized)
		if why != "" {
			return why
		}
		for _, col := range m.PartitionColumns() {
			if v, _ := get(col); strings.Contains(v, profile.PartitionSeparator) {
				return fmt.Sprintf("its data's %s holds %q, which separates the parts of a partition", col, profile.PartitionSeparator)
			}
		}
		p, err := m.PartitionOf(r.ID, get)
		if err != nil {
			return "its data gives no partition (" + err.Error() + ")"
		}
		if !write.Contains(p) {
			return fmt.Sprintf("its data puts it in partition %q: %s", p, ErrOutsideScope)
		}
		return ""
	}
	var first string
	var vs []store.HistoryEntry
	if !r.Deleted && !r.HardDeleted {
		if why := outside(r.Serialized); why != "" {
			first = why
			vs = append(vs, store.HistoryEntry{Instance: r.LastSavedInstance, Counter: r.LastSavedCounter})
		}
	}
	if r.Conflicting == "" {
		return first, vs
	}
	sib, err := merge.DecodeSiblings(r.Conflicting)
	if err != nil {
		return first, vs // refused as malformed when merged
	}
	for _, v := range sib {
		if v.Deleted || v.HardDeleted {
			continue
		}
		if why := outside(v.Serialized); why != "" {
			if first == "" {
				first = "a conflicting version: " + why
			}
			vs = append(vs, store.HistoryEntry{Instance: v.Instance, Counter: v.Counter})
		}
	}
	return first, vs
}

// IsAlreadyApplied reports whether err says a bundle was applied before.
func IsAlreadyApplied(err error) bool { return errors.Is(err, store.ErrAlreadyApplied) }

// computedBeforeRestore reports whether a bundle computed against the
// recipient's counters peer may have been computed against a state of this
// file later than the one it holds now (before it was restored from a
// backup): peer holds, under filter, more of some instance than this
// database does, or is not known. Claiming such a bundle's counters would
// claim what the restored file lost.
func computedBeforeRestore(ctx context.Context, db *store.DB, peer *fsic.V2, filter certs.Filter) (bool, error) {
	if peer == nil {
		return true, nil
	}
	ours, err := db.FSIC(ctx, filter)
	if err != nil {
		return false, err
	}
	return len(fsic.Diff(fsic.Expand(*peer, filter), fsic.Expand(ours, filter))) > 0, nil
}
