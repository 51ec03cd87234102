package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/morango-sync/morango/fsic"
	"github.com/morango-sync/morango/merge"
	"github.com/morango-sync/morango/profile"
)

// Refusal is an incoming record that was not merged, and why.
type Refusal struct {
	ID        string `json:"id"`
	ModelName string `json:"model_name"`
	Partition string `json:"partition"`
	Reason    string `json:"reason"`
}

// maxRefusals bounds the refusals an import lists (all are counted).
const maxRefusals = 1000

// ImportResult says what applying an incoming transfer did.
type ImportResult struct {
	// Received counts the records the transfer carried, refused ones
	// included.
	Received    int64 `json:"received"`
	New         int64 `json:"new"`
	AlreadyHave int64 `json:"already_have"`
	FastForward int64 `json:"fast_forward"`
	Conflicts   int64 `json:"conflicts"`
	Refused     int64 `json:"refused"`
	// Refusals lists the first refused records.
	Refusals    []Refusal         `json:"refusals,omitempty"`
	PerModel    map[string]int64  `json:"per_model"`
	Serialized  SerializeResult   `json:"serialized"`
	Deserialize DeserializeResult `json:"deserialized"`
	Outcomes    map[string]int64  `json:"-"`
	Claims      []fsic.MaxCounter `json:"-"`
}

// Refuse records a refused record.
func (r *ImportResult) Refuse(rec *Record, reason string) {
	r.Refused++
	if len(r.Refusals) < maxRefusals {
		r.Refusals = append(r.Refusals, Refusal{ID: clip(rec.ID), ModelName: clip(rec.ModelName), Partition: clip(rec.Partition),
			Reason: reason})
	}
}

// clip returns a copy of at most 256 bytes of s for a list of refusals:
// the fields of a record read from a bundle share one string with its data,
// which a refusal must not keep alive, and a hostile record's fields may be
// of any length.
func clip(s string) string {
	const most = 256
	if len(s) > most {
		s = s[:most] + "…"
	}
	return strings.Clone(s)
}

// Import applies one incoming transfer in a single write transaction: local
// changes are serialized first, so they take part in merging; then records
// are merged in batches (Add), the sender's counters recorded (Claim), and
// Finish deserializes into the app and commits. Until Finish commits,
// nothing is visible and an interruption leaves the database as it was.
type Import struct {
	db      *DB
	tx      *sql.Tx
	res     ImportResult
	rules   map[string]merge.Rule
	insert  *sql.Stmt // a new store row
	update  *sql.Stmt // a store row, by rowid
	history *sql.Stmt // a record-max counter
	local   *sql.Stmt // the local records with the ids of a JSON array
	// headHistory enters the heads of the store rows listed (a JSON array
	// of rowids) into their records' histories.
	headHistory *sql.Stmt
	incoming    *sql.Stmt // rowids of records to deserialize
	rebuild     []string  // indexes dropped for a bulk import, rebuilt by Finish
	// seen holds the ids this import wrote, when the store was empty as
	// it began (nil otherwise): an id it has not seen has no local
	// record, and is not looked up.
	seen *seenSet
	// direct holds, for each model, the statement that writes records
	// into the app table as they are merged, while that is possible (see
	// startDirect); nil otherwise. directWritten counts the rows it wrote.
	direct        map[string]*sql.Stmt
	directWritten int64
	done          bool
}

// BeginImport starts applying the transfer transferID.
func (db *DB) BeginImport(ctx context.Context, transferID string) (*Import, error) {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin import: %w", err)
	}
	im := &Import{db: db, tx: tx, rules: map[string]merge.Rule{}}
	im.res.PerModel = map[string]int64{}
	if im.res.Serialized, err = db.serialize(ctx, tx); err != nil {
		im.Abort()
		return nil, err
	}
	for _, m := range db.profile.Models {
		im.rules[m.Name] = ruleFor(m)
	}
	var empty bool
	if err := tx.QueryRowContext(ctx, `SELECT NOT EXISTS (SELECT 1 FROM morango_store)`).Scan(&empty); err != nil {
		im.Abort()
		return nil, fmt.Errorf("begin import: %w", err)
	}
	if empty {
		im.seen = newSeenSet(0)
		if err := im.startDirect(ctx); err != nil {
			im.Abort()
			return nil, fmt.Errorf("begin import: %w", err)
		}
	}
	// One row per statement: a multi-row INSERT is compiled as a SELECT
	// and needs a statement journal, which costs more than it saves. New
	// rows are not marked dirty: the rowids of the records to deserialize
	// are listed in temp.morango_incoming instead (see deserialize).
	_, err = tx.ExecContext(ctx, incomingTable)
	if err == nil {
		_, err = tx.ExecContext(ctx, `DELETE FROM temp.morango_incoming`)
	}
	if err == nil {
		// The profile (Add refuses records of another) and the transfer
		// are the same for every row: they are part of the statement,
		// not arguments to bind for each.
		im.insert, err = tx.PrepareContext(ctx, fmt.Sprintf(`INSERT INTO morango_store (id, profile, serialized, deleted, hard_deleted,
			last_saved_instance, last_saved_counter, partition, source_id, model_name, conflicting_serialized_data,
			_self_ref_fk, last_transfer_session_id) VALUES (?, %s, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, %s)`,
			literal(db.profile.Name), literal(transferID)))
	}
	if err == nil {
		im.update, err = tx.PrepareContext(ctx, fmt.Sprintf(`UPDATE morango_store SET serialized = ?, deleted = ?, hard_deleted = ?,
			last_saved_instance = ?, last_saved_counter = ?, conflicting_serialized_data = ?, _self_ref_fk = ?,
			deserialization_error = CASE WHEN ? THEN '' ELSE deserialization_error END, last_transfer_session_id = %s
			WHERE rowid = ?`, literal(transferID)))
	}
	if err == nil {
		im.incoming, err = tx.PrepareContext(ctx, `INSERT INTO temp.morango_incoming (model, rid)
			SELECT ?, value FROM json_each(?) WHERE true ON CONFLICT DO NOTHING`)
	}
	if err == nil {
		im.history, err = tx.PrepareContext(ctx, `INSERT INTO morango_recordmaxcounter (store_model_id, instance_id, counter)
			VALUES (?, ?, ?) ON CONFLICT (store_model_id, instance_id) DO UPDATE SET counter = max(counter, excluded.counter)`)
	}
	if err == nil {
		// The ids come as one JSON array: one statement prepared once, and
		// one argument to bind instead of one per record.
		im.local, err = tx.PrepareContext(ctx, `SELECT s.rowid, `+recordColumns("s")+`
			FROM morango_store s WHERE s.id IN (SELECT value FROM json_each(?))`)
	}
	if err == nil {
		im.headHistory, err = tx.PrepareContext(ctx, `INSERT INTO morango_recordmaxcounter (store_model_id, instance_id, counter)
			SELECT s.id, s.last_saved_instance, s.last_saved_counter FROM json_each(?) j CROSS JOIN morango_store s ON s.rowid = j.value
			WHERE true ON CONFLICT (store_model_id, instance_id) DO UPDATE SET counter = max(counter, excluded.counter)`)
	}
	if err != nil {
		im.Abort()
		return nil, fmt.Errorf("begin import: %w", err)
	}
	return im, nil
}

// bulkIndexes are the store's indexes a bulk import drops and rebuilds:
// keyed by partition, they take the incoming records in no useful order,
// and building one from a sort costs far less than as many inserts at
// random places. The indexes keyed by id take the records in the order the
// sender stored them, which is mostly id order.
var bulkIndexes = []string{"morango_store_partition"}

// bulkIndexDefs define the bulkIndexes, for restoreIndexes.
var bulkIndexDefs = map[string]string{
	"morango_store_partition": `CREATE INDEX IF NOT EXISTS morango_store_partition ON morango_store (partition, model_name)`,
}

// restoreIndexes creates the bulkIndexes that are missing: a serialization
// in several transactions that stopped between its first and its last
// leaves its dropped index missing (an import rebuilds its own in the
// transaction that dropped it). A serialization still running in another
// handle or process then finds the index there at its end (see
// rebuildIndexes), and keeps it up to date meanwhile.
func restoreIndexes(ctx context.Context, w *sql.DB) error {
	for _, name := range bulkIndexes {
		var n int
		err := w.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ?`, name).Scan(&n)
		if err == nil && n == 0 {
			_, err = w.ExecContext(ctx, bulkIndexDefs[name])
		}
		if err != nil {
			return fmt.Errorf("restore index %s: %w", name, err)
		}
	}
	return nil
}

// minBulk is the least number of incoming records for which an import can
// be bulk.
var minBulk int64 = 10000

// Expect tells the import how many records it is about to merge. If they
// are at least as many as the store holds (the first import of a device,
// typically), the import is bulk: before the first record is written, the
// store's indexes keyed by partition are dropped, and Finish rebuilds them,
// identical, inside the same transaction. Expect must come before Add.
func (im *Import) Expect(ctx context.Context, records int64) error {
	if im.seen != nil && im.res.Received == 0 {
		im.seen = newSeenSet(records)
	}
	if records < minBulk || im.rebuild != nil || im.res.Received > 0 {
		return nil
	}
	var err error
	im.rebuild, err = dropForBulk(ctx, im.tx, records)
	return err
}

// dropForBulk drops the bulkIndexes if records, the number of records
// about to be written, is at least the number of rows in the store, and
// returns the statements that rebuild them (rebuildIndexes).
func dropForBulk(ctx context.Context, tx *sql.Tx, records int64) ([]string, error) {
	var rows int64
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(rowid), 0) FROM morango_store`).Scan(&rows); err != nil {
		return nil, fmt.Errorf("size the store: %w", err)
	}
	if records < rows {
		return nil, nil
	}
	var defs []string
	for _, name := range bulkIndexes {
		var def string
		err := tx.QueryRowContext(ctx, `SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?`, name).Scan(&def)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err == nil {
			_, err = tx.ExecContext(ctx, `DROP INDEX `+quote(name))
		}
		if err != nil {
			return nil, fmt.Errorf("bulk write: %w", err)
		}
		defs = append(defs, def)
	}
	return defs, nil
}

// rebuildIndexes rebuilds the indexes dropForBulk dropped.
func rebuildIndexes(ctx context.Context, tx *sql.Tx, defs []string) error {
	for _, def := range defs {
		// Another handle may have restored it since it was dropped.
		if rest, ok := strings.CutPrefix(def, "CREATE INDEX "); ok && !strings.HasPrefix(rest, "IF NOT EXISTS ") {
			def = "CREATE INDEX IF NOT EXISTS " + rest
		}
		start := time.Now()
		if _, err := tx.ExecContext(ctx, def); err != nil {
			return fmt.Errorf("rebuild index: %w", err)
		}
		since(def, start)
	}
	return nil
}

// Abort rolls the import back.
func (im *Import) Abort() {
	if im.done {
		return
	}
	im.done = true
	im.tx.Rollback()
}

// Result returns what the import has done so far.
func (im *Import) Result() *ImportResult { return &im.res }

// Add merges a batch of incoming records. Records that cannot be merged
// (another profile, an id that exists here under another model or
// partition, malformed versions) are refused and listed, never merged.
//
// The local records of the whole batch are read with one query, and what
// changed is written sorted by id.
func (im *Import) Add(ctx context.Context, batch []*Record) error {
	if len(batch) == 0 {
		return nil
	}
	local, err := im.locals(ctx, batch)
	if err != nil {
		return err
	}
	w := batchWriter{pos: make(map[string]int, len(batch))}
	for _, in := range batch {
		im.res.Received++
		if in.Profile != im.db.profile.Name {
			im.res.Refuse(in, fmt.Sprintf("record of profile %q, this database syncs %q", in.Profile, im.db.profile.Name))
			continue
		}
		cur := local[in.ID]
		if cur != nil && im.direct != nil {
			if err := im.stopDirect(ctx); err != nil {
				return err
			}
		}
		if cur != nil && (cur.ModelName != in.ModelName || cur.Partition != in.Partition) {
			im.res.Refuse(in, fmt.Sprintf("id already used here by %s in partition %q", cur.ModelName, cur.Partition))
			continue
		}
		// An erased record is deleted, as serialize makes it: one that
		// says otherwise would keep its app row under an erased record
		// here, and differ from the same version where it was made. So is
		// each of its erased concurrent versions, which the merge may
		// make the head.
		if in.HardDeleted {
			in.Deleted = true
		}
		inState, err := stateOf(in)
		if err != nil {
			im.res.Refuse(in, err.Error())
			continue
		}
		for i := range inState.Siblings {
			if inState.Siblings[i].HardDeleted {
				inState.Siblings[i].Deleted = true
			}
		}
		if len(in.Unvouched) > 0 && !knowsAll(cur, in.Unvouched) {
			im.res.Refuse(in, in.UnvouchedWhy+" (a version of another device, which this one does not hold yet: it comes from a device whose certificate may write it)")
			continue
		}
		var curState *merge.State
		if cur != nil {
			s, err := stateOf(cur)
			if err != nil {
				return fmt.Errorf("local record %s: %w", cur.ID, err)
			}
			curState = &s
		}
		rule := im.rules[in.ModelName] // nil for models this device does not know: the default order
		out, err := merge.Merge(curState, inState, rule)
		if err != nil {
			im.res.Refuse(in, err.Error())
			continue
		}
		im.res.PerModel[in.ModelName]++
		switch out.Outcome {
		case merge.New:
			im.res.New++
		case merge.AlreadyHave:
			im.res.AlreadyHave++
		case merge.FastForward:
			im.res.FastForward++
		default:
			im.res.Conflicts++
		}
		if !out.Changed {
			continue
		}
		// A later record of the batch with the same id merges into this
		// result, not into the state read before the batch.
		// The self-referencing column is looked for only when the head is
		// neither record's (rare).
		var selfRef string
		if h := out.State.Head; !h.HardDeleted && !isHead(h, in) && (cur == nil || !isHead(h, cur)) {
			if m := im.db.profile.Model(in.ModelName); m != nil {
				selfRef = m.SelfRef()
			}
		}
		local[in.ID] = w.add(in, cur, out, selfRef)
	}
	return im.flush(ctx, &w)
}

// knowsAll reports whether the history of the local record cur (nil for
// none) covers every version vs names.
func knowsAll(cur *Record, vs []HistoryEntry) bool {
	if cur == nil {
		return false
	}
	h := cur.historyMap()
	for _, v := range vs {
		if h[v.Instance] < v.Counter {
			return false
		}
	}
	return true
}

// batchWriter collects the rows a batch writes: one store row per id (the
// last merge result of that id) and the history entries that rose.
type batchWriter struct {
	rows []pendingRow
	pos  map[string]int // id → index in rows
	hist []HistoryEntry // entries to write, of the records hids
	hids []string
}

type pendingRow struct {
	rec   Record
	rowid int64 // of the local row; 0 for a new one
	dirty bool
	// headEntry: the record's head enters its history (see flush).
	headEntry bool
}

// add records the result of one merge and returns the record's new state.
// selfRefCol is the model's self-referencing column, if it has one.
func (w *batchWriter) add(in, cur *Record, out merge.Result, selfRefCol string) *Record {
	st := out.State
	base := in
	if cur != nil {
		base = cur // identity fields never move
	}
	// The parent named by the head, whichever version that is: the
	// incoming one, the local one, or one of the local record's conflicting
	// versions that the incoming data promoted.
	selfRef := in.SelfRefFK
	switch {
	case st.Head.HardDeleted:
		selfRef = "" // its data is erased, the parent with it
	case isHead(st.Head, in):
	case cur != nil && isHead(st.Head, cur):
		selfRef = cur.SelfRefFK
	case selfRefCol != "":
		selfRef = selfRefOf(st.Head.Serialized, selfRefCol)
	}
	r := pendingRow{rec: Record{ID: base.ID, Profile: base.Profile, ModelName: base.ModelName, Partition: base.Partition,
		SourceID: base.SourceID, Serialized: st.Head.Serialized, Deleted: st.Head.Deleted, HardDeleted: st.Head.HardDeleted,
		LastSavedInstance: st.Head.Instance, LastSavedCounter: st.Head.Counter, Conflicting: merge.EncodeSiblings(st.Siblings),
		SelfRefFK: selfRef, History: historyList(st.History)},
		dirty: out.Dirty || cur == nil}
	if cur != nil {
		r.rowid, r.rec.rowid = cur.rowid, cur.rowid
	}
	i, ok := w.pos[r.rec.ID]
	if ok {
		r.dirty = r.dirty || w.rows[i].dirty
		w.rows[i] = r
	} else {
		i = len(w.rows)
		w.pos[r.rec.ID] = i
		w.rows = append(w.rows, r)
	}
	var before map[string]int64
	if cur != nil {
		before = cur.historyMap()
	}
	for _, h := range r.rec.History {
		if before == nil || before[h.Instance] < h.Counter {
			w.hist = append(w.hist, h)
			w.hids = append(w.hids, r.rec.ID)
		}
	}
	rec := w.rows[i].rec // a copy: rows grows
	return &rec
}

// flush writes a batch's rows in id order, so that consecutive writes fall
// on the same pages of the store's indexes.
func (im *Import) flush(ctx context.Context, w *batchWriter) error {
	// A batch's writes run to their end once begun: the driver watches a
	// cancellable context with a goroutine of its own for each statement,
	// which costs more than the insert of a row. Cancellation is seen
	// between batches.
	if err := ctx.Err(); err != nil {
		return err
	}
	ctx = context.WithoutCancel(ctx)
	sort.Slice(w.rows, func(a, b int) bool { return w.rows[a].rec.ID < w.rows[b].rec.ID })
	dirty := map[string][]int64{}  // model → rowids of the records to deserialize
	direct := map[string][]int64{} // model → rowids of the records to write in the app now
	start := time.Now()
	for i := range w.rows {
		p := &w.rows[i]
		r := &p.rec
		if p.rowid == 0 {
			res, err := im.insert.ExecContext(ctx, r.ID, r.Serialized, r.Deleted, r.HardDeleted,
				r.LastSavedInstance, r.LastSavedCounter, r.Partition, r.SourceID, r.ModelName,
				r.Conflicting, r.SelfRefFK)
			if err == nil {
				p.rowid, err = res.LastInsertId()
			}
			if err != nil {
				return fmt.Errorf("write record %s: %w", r.ID, err)
			}
		} else {
			_, err := im.update.ExecContext(ctx, r.Serialized, r.Deleted, r.HardDeleted, r.LastSavedInstance, r.LastSavedCounter,
				r.Conflicting, r.SelfRefFK, p.dirty, p.rowid)
			if err != nil {
				return fmt.Errorf("write record %s: %w", r.ID, err)
			}
		}
		switch {
		case !p.dirty:
		case im.direct[r.ModelName] != nil && !r.Deleted: // nil while not writing directly
			direct[r.ModelName] = append(direct[r.ModelName], p.rowid)
		default:
			dirty[r.ModelName] = append(dirty[r.ModelName], p.rowid)
		}
		if im.seen != nil {
			im.seen.add(r.ID)
		}
	}
	since("import: write store rows", start)
	start = time.Now()
	// Parents first: a batch's children find the parents it wrote.
	for _, m := range im.db.profile.Ordered() {
		rids := direct[m.Name]
		if len(rids) == 0 {
			continue
		}
		left, err := im.writeDirect(ctx, m, rids)
		if err != nil {
			return err
		}
		if len(left) > 0 {
			dirty[m.Name] = append(dirty[m.Name], left...)
		}
	}
	since("import: write app rows", start)
	start = time.Now()
	defer since("import: list rows to deserialize, write histories", start)
	for model, rids := range dirty {
		list, err := json.Marshal(rids)
		if err == nil {
			_, err = im.incoming.ExecContext(ctx, model, string(list))
		}
		if err != nil {
			return fmt.Errorf("list records to deserialize: %w", err)
		}
	}
	// Most entries that rose are the record's new head (a record new
	// here, with one version in its history): those are written from the
	// store rows just written, by one statement for the batch. The others
	// are written one by one.
	byID := make(map[string]*pendingRow, len(w.rows))
	for i := range w.rows {
		byID[w.rows[i].rec.ID] = &w.rows[i]
	}
	order := make([]int, 0, len(w.hist))
	for i, h := range w.hist {
		p := byID[w.hids[i]]
		if p.rec.LastSavedInstance == h.Instance && p.rec.LastSavedCounter == h.Counter {
			p.headEntry = true
			continue
		}
		order = append(order, i)
	}
	var heads []int64
	for i := range w.rows {
		if w.rows[i].headEntry {
			heads = append(heads, w.rows[i].rowid)
		}
	}
	if len(heads) > 0 {
		list, err := json.Marshal(heads)
		if err == nil {
			_, err = im.headHistory.ExecContext(ctx, string(list))
		}
		if err != nil {
			return fmt.Errorf("write history: %w", err)
		}
	}
	sort.Slice(order, func(a, b int) bool {
		x, y := order[a], order[b]
		if w.hids[x] != w.hids[y] {
			return w.hids[x] < w.hids[y]
		}
		return w.hist[x].Instance < w.hist[y].Instance
	})
	for _, j := range order {
		if _, err := im.history.ExecContext(ctx, w.hids[j], w.hist[j].Instance, w.hist[j].Counter); err != nil {
			return fmt.Errorf("write history of %s: %w", w.hids[j], err)
		}
	}
	return nil
}

// isHead reports whether v is r's head version.
func isHead(v merge.Version, r *Record) bool {
	return v.Instance == r.LastSavedInstance && v.Counter == r.LastSavedCounter
}

// selfRefOf is the _self_ref_fk of a version whose data is serialized: its
// self-referencing column's value as text (as serializing an app row
// writes it), "" where it is null, missing or the data unreadable.
func selfRefOf(serialized, col string) string {
	var fields map[string]json.RawMessage
	if json.Unmarshal([]byte(serialized), &fields) != nil {
		return ""
	}
	v := fields[col]
	var s string
	switch {
	case len(v) == 0 || string(v) == "null":
		return ""
	case json.Unmarshal(v, &s) == nil:
		return s
	}
	return string(v)
}

// locals reads the local records with the batch's ids.
func (im *Import) locals(ctx context.Context, batch []*Record) (map[string]*Record, error) {
	defer since("import: read local records", time.Now())
	ids := make([]string, 0, len(batch))
	for _, r := range batch {
		if im.seen == nil || im.seen.contains(r.ID) {
			ids = append(ids, r.ID)
		}
	}
	local := make(map[string]*Record, len(batch))
	if len(ids) == 0 {
		return local, nil
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return nil, fmt.Errorf("read local records: %w", err)
	}
	rows, err := im.local.QueryContext(ctx, string(list))
	if err != nil {
		return nil, fmt.Errorf("read local records: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		r := new(Record)
		if err := scanRecord(withRowid{rows, &r.rowid}, r); err != nil {
			return nil, fmt.Errorf("read local record: %w", err)
		}
		local[r.ID] = r
	}
	return local, rows.Err()
}

// withRowid scans a rowid before the columns of a record.
type withRowid struct {
	sc  scanner
	rid *int64
}

func (w withRowid) Scan(dest ...any) error { return w.sc.Scan(append([]any{w.rid}, dest...)...) }

// stateOf returns a record's merge state.
func stateOf(r *Record) (merge.State, error) {
	sib, err := merge.DecodeSiblings(r.Conflicting)
	if err != nil {
		return merge.State{}, fmt.Errorf("conflicting versions: %w", err)
	}
	return merge.State{
		Head:     headOf(r),
		Siblings: sib,
		History:  r.historyMap(),
	}, nil
}

// Claim records counters the sender claims: this database now holds every
// version they cover. Counters only rise.
func (im *Import) Claim(ctx context.Context, claims []fsic.MaxCounter) error {
	for _, c := range claims {
		_, err := im.tx.ExecContext(ctx, `INSERT INTO morango_databasemaxcounter (instance_id, partition, counter) VALUES (?, ?, ?)
			ON CONFLICT (instance_id, partition) DO UPDATE SET counter = max(counter, excluded.counter)`, c.Instance, c.Partition, c.Counter)
		if err != nil {
			return fmt.Errorf("record counters: %w", err)
		}
	}
	im.res.Claims = append(im.res.Claims, claims...)
	return nil
}

// Applied identifies a bundle whose records are in the store.
type Applied struct {
	TransferID     string
	SHA256         string
	SenderInstance string
	Records        int64
}

// ErrAlreadyApplied is returned for a bundle this database has applied.
var ErrAlreadyApplied = errors.New("bundle already applied")

// Finish writes the merged records into the app's tables, records the bundle
// as applied and commits.
func (im *Import) Finish(ctx context.Context, a Applied) (*ImportResult, error) {
	defer im.Abort()
	var err error
	if err := rebuildIndexes(ctx, im.tx, im.rebuild); err != nil {
		return nil, err
	}
	im.rebuild = nil
	if im.res.Deserialize, err = im.db.deserialize(ctx, im.tx); err != nil {
		return nil, err
	}
	im.res.Deserialize.Written += im.directWritten
	if a.TransferID != "" {
		_, err := im.tx.ExecContext(ctx, `INSERT INTO morango_appliedbundle (transfer_id, sha256, sender_instance_id, records, applied_at)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (transfer_id) DO NOTHING`, a.TransferID, a.SHA256, a.SenderInstance, a.Records, now())
		if err != nil {
			return nil, fmt.Errorf("record applied bundle: %w", err)
		}
	}
	start := time.Now()
	if err := im.tx.Commit(); err != nil {
		return nil, fmt.Errorf("commit import: %w", err)
	}
	since("commit", start)
	im.done = true
	return &im.res, nil
}

// AppliedBundle reports whether the bundle transferID has been applied.
func (db *DB) AppliedBundle(ctx context.Context, transferID string) (bool, error) {
	var n int
	err := db.r.QueryRowContext(ctx, `SELECT count(*) FROM morango_appliedbundle WHERE transfer_id = ?`, transferID).Scan(&n)
	return n > 0, err
}

// writeDirectly switches startDirect on; tests compare both ways.
var writeDirectly = true

// startDirect has the import write records into the app's tables as it
// merges them, while their pages are still in SQLite's cache, instead of
// listing them for Finish to read back from the store and deserialize.
//
// It is for the first import of a device: the store and every synced app
// table are empty as the import begins, and the tables have nothing of the
// app's own that makes the rows they end with depend on the order in which
// they are written (directTable). Then every record is new, every app row
// present was written by this import from a live record, and a record
// written this way is final: Finish never deletes its row, since nothing
// this import brings can delete a record it holds unless a record comes
// twice, which undoes the direct writes (stopDirect). Records that cannot
// be written yet (deleted ones, those whose foreign-key target is not in
// the app, those the app's constraints refuse) are listed for Finish,
// which deserializes them as any import does.
func (im *Import) startDirect(ctx context.Context) error {
	if !writeDirectly {
		return nil
	}
	for _, m := range im.db.profile.Models {
		ok, err := im.directTable(ctx, m)
		if err != nil || !ok {
			return err
		}
	}
	// The app's triggers must not take these writes for the app's own
	// (deserialize removes the row at its end).
	if _, err := im.tx.ExecContext(ctx, `INSERT INTO morango_applying (active) VALUES (1)`); err != nil {
		return err
	}
	im.direct = map[string]*sql.Stmt{}
	for _, m := range im.db.profile.Models {
		t := im.db.schema[m.Table]
		q := insertSQL(t, syncedColumns(t, m)) +
			` FROM json_each(?) j CROSS JOIN morango_store s ON s.rowid = j.value WHERE NOT s.deleted`
		if fk := im.db.fkReadySQL(m, ""); fk != "" {
			q += " AND " + fk
		}
		st, err := im.tx.PrepareContext(ctx, q)
		if err != nil {
			return err
		}
		im.direct[m.Name] = st
	}
	return nil
}

// directTable reports whether the app table of m can take records as
// they are merged: it is empty, and nothing of the app's own can make the
// rows it holds depend on the order in which they are written, nor undo
// more than the statement that writes them: its primary key is id, and it
// has no triggers but morango's, no unique index but the primary key's, no
// CHECK, UNIQUE or ON CONFLICT clause.
func (im *Import) directTable(ctx context.Context, m *profile.Model) (bool, error) {
	var used, idKey bool
	var def string
	var triggers, unique int
	// Names of tables are compared as SQLite does, without case: a
	// trigger's tbl_name is the name as its CREATE TRIGGER spelled it.
	err := im.tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM `+quote(m.Table)+`),
		(SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1 COLLATE NOCASE),
		(SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?1 COLLATE NOCASE AND name NOT IN (?2, ?3, ?4)),
		(SELECT count(*) FROM pragma_index_list(?1) WHERE "unique" AND origin <> 'pk'),
		(SELECT group_concat(name) = 'id' FROM pragma_table_info(?1) WHERE pk > 0)`,
		m.Table, trackingTrigger(m.Table, "insert"), trackingTrigger(m.Table, "update"), trackingTrigger(m.Table, "delete")).
		Scan(&used, &def, &triggers, &unique, &idKey)
	if err != nil {
		return false, fmt.Errorf("inspect table %s: %w", m.Table, err)
	}
	def = strings.ToUpper(def)
	clauses := strings.Contains(def, "CHECK") || strings.Contains(def, "UNIQUE") || strings.Contains(def, "CONFLICT")
	return !used && idKey && triggers == 0 && unique == 0 && !clauses, nil
}

// writeDirect writes the records of m whose store rowids are rids into
// its app table, and returns the rowids of those it could not write.
func (im *Import) writeDirect(ctx context.Context, m *profile.Model, rids []int64) ([]int64, error) {
	list, err := json.Marshal(rids)
	if err != nil {
		return nil, err
	}
	r, err := im.execDirect(ctx, m, string(list))
	if err != nil {
		// The app's constraints refused a row, or a record's data is
		// not what SQLite can read: the statement wrote nothing. The rows
		// are written one by one, and Finish writes those refused again
		// and keeps the reason. Any other error ends the import.
		if !refused(err) {
			return nil, fmt.Errorf("write %s rows: %w", m.Name, err)
		}
		var left []int64
		for _, rid := range rids {
			r, err := im.execDirect(ctx, m, fmt.Sprintf("[%d]", rid))
			var n int64
			if err == nil {
				n, err = r.RowsAffected()
			}
			switch {
			case err != nil && !refused(err):
				return nil, fmt.Errorf("write %s rows: %w", m.Name, err)
			case err != nil || n == 0:
				left = append(left, rid)
			}
			im.directWritten += n
		}
		return left, nil
	}
	n, err := r.RowsAffected()
	if err != nil {
		return nil, err
	}
	im.directWritten += n
	if n == int64(len(rids)) {
		return nil, nil
	}
	// Some could not be written yet. Every app row was written by this
	// import from the record of its id, so those not in the table are
	// the ones left.
	left, err := rowids(ctx, im.tx, fmt.Sprintf(`SELECT j.value FROM json_each(?) j CROSS JOIN morango_store s ON s.rowid = j.value
		WHERE NOT EXISTS (SELECT 1 FROM %s a WHERE a.id = s.id)`, quote(m.Table)), string(list))
	if err != nil {
		return nil, fmt.Errorf("write %s rows: %w", m.Name, err)
	}
	return left, nil
}

// execDirect runs the direct statement of m over the store rowids of list
// (a JSON array) inside a savepoint. SQLite undoes a statement it refuses;
// the savepoint makes sure that this is all it undid: were the whole
// transaction rolled back (by something of the app's own that directTable
// did not foresee), releasing the savepoint fails, and so does the import,
// instead of going on outside any transaction.
func (im *Import) execDirect(ctx context.Context, m *profile.Model, list string) (sql.Result, error) {
	if _, err := im.tx.ExecContext(ctx, `SAVEPOINT morango_direct`); err != nil {
		return nil, err
	}
	r, err := im.direct[m.Name].ExecContext(ctx, list)
	if err != nil {
		if _, rerr := im.tx.ExecContext(ctx, `ROLLBACK TO morango_direct`); rerr != nil {
			// Neither error is wrapped: this is no refusal to recover from.
			return nil, fmt.Errorf("write %s rows: %v; the import's transaction is gone: %v", m.Name, err, rerr)
		}
	}
	if _, rerr := im.tx.ExecContext(ctx, `RELEASE morango_direct`); rerr != nil {
		return nil, fmt.Errorf("write %s rows: the import's transaction is gone: %v (%v)", m.Name, rerr, err)
	}
	return r, err
}

// stopDirect ends direct writing: the rows it wrote leave the app tables
// (the tables were empty, so they are all of their rows), and every record
// in the store, all written by this import, is listed for Finish to
// deserialize, as if none had been written directly.
func (im *Import) stopDirect(ctx context.Context) error {
	for _, st := range im.direct {
		st.Close()
	}
	im.direct = nil
	im.directWritten = 0
	for _, m := range im.db.profile.Models {
		if _, err := im.tx.ExecContext(ctx, `DELETE FROM `+quote(m.Table)); err != nil {
			return fmt.Errorf("undo direct writes to %s: %w", m.Table, err)
		}
	}
	_, err := im.tx.ExecContext(ctx, `INSERT INTO temp.morango_incoming (model, rid)
		SELECT model_name, rowid FROM morango_store WHERE true ON CONFLICT DO NOTHING`)
	if err != nil {
		return fmt.Errorf("list records to deserialize: %w", err)
	}
	return nil
}

// refused reports whether err is SQLite refusing a statement for what it
// was asked to write (a constraint, a value's type or size, data it cannot
// read), which undoes the statement and leaves the transaction as it was.
// The tables written directly have no clause or trigger that could undo
// more (see directTable); errors of the disk or of memory end the import.
func refused(err error) bool {
	switch sqliteCode(err) & 0xff {
	case sqlite3.SQLITE_ERROR, sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_TOOBIG:
		return true
	}
	return false
}
