package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/morango-sync/morango/fsic"
	"github.com/morango-sync/morango/merge"
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
		r.Refusals = append(r.Refusals, Refusal{ID: rec.ID, ModelName: rec.ModelName, Partition: rec.Partition, Reason: reason})
	}
}

// Import applies one incoming transfer in a single write transaction: local
// changes are serialized first, so they take part in merging; then records
// are merged in batches (Add), the sender's counters recorded (Claim), and
// Finish deserializes into the app and commits. Until Finish commits,
// nothing is visible and an interruption leaves the database as it was.
type Import struct {
	db         *DB
	tx         *sql.Tx
	transferID string
	res        ImportResult
	rules      map[string]merge.Rule
	upsert     *sql.Stmt
	history    *sql.Stmt
	done       bool
}

// BeginImport starts applying the transfer transferID.
func (db *DB) BeginImport(ctx context.Context, transferID string) (*Import, error) {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin import: %w", err)
	}
	im := &Import{db: db, tx: tx, transferID: transferID, rules: map[string]merge.Rule{}}
	im.res.PerModel = map[string]int64{}
	if im.res.Serialized, err = db.serialize(ctx, tx); err != nil {
		im.Abort()
		return nil, err
	}
	for _, m := range db.profile.Models {
		im.rules[m.Name] = ruleFor(m)
	}
	im.upsert, err = tx.PrepareContext(ctx, `INSERT INTO morango_store (id, profile, serialized, deleted, hard_deleted,
			last_saved_instance, last_saved_counter, partition, source_id, model_name, conflicting_serialized_data,
			_self_ref_fk, dirty_bit, deserialization_error, last_transfer_session_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?)
		ON CONFLICT (id) DO UPDATE SET serialized = excluded.serialized, deleted = excluded.deleted,
			hard_deleted = excluded.hard_deleted, last_saved_instance = excluded.last_saved_instance,
			last_saved_counter = excluded.last_saved_counter,
			conflicting_serialized_data = excluded.conflicting_serialized_data, _self_ref_fk = excluded._self_ref_fk,
			dirty_bit = dirty_bit OR excluded.dirty_bit,
			deserialization_error = CASE WHEN excluded.dirty_bit THEN '' ELSE deserialization_error END,
			last_transfer_session_id = excluded.last_transfer_session_id`)
	if err == nil {
		im.history, err = tx.PrepareContext(ctx, `INSERT INTO morango_recordmaxcounter (store_model_id, instance_id, counter)
			VALUES (?, ?, ?) ON CONFLICT (store_model_id, instance_id) DO UPDATE SET counter = max(counter, excluded.counter)`)
	}
	if err != nil {
		im.Abort()
		return nil, fmt.Errorf("begin import: %w", err)
	}
	return im, nil
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
func (im *Import) Add(ctx context.Context, batch []*Record) error {
	if len(batch) == 0 {
		return nil
	}
	local, err := im.locals(ctx, batch)
	if err != nil {
		return err
	}
	for _, in := range batch {
		im.res.Received++
		if in.Profile != im.db.profile.Name {
			im.res.Refuse(in, fmt.Sprintf("record of profile %q, this database syncs %q", in.Profile, im.db.profile.Name))
			continue
		}
		cur := local[in.ID]
		if cur != nil && (cur.ModelName != in.ModelName || cur.Partition != in.Partition) {
			im.res.Refuse(in, fmt.Sprintf("id already used here by %s in partition %q", cur.ModelName, cur.Partition))
			continue
		}
		inState, err := stateOf(in)
		if err != nil {
			im.res.Refuse(in, err.Error())
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
		if err := im.write(ctx, in, cur, out); err != nil {
			return err
		}
	}
	return nil
}

// locals reads the local records with the batch's ids.
func (im *Import) locals(ctx context.Context, batch []*Record) (map[string]*Record, error) {
	args := make([]any, len(batch))
	for i, r := range batch {
		args[i] = r.ID
	}
	rows, err := im.tx.QueryContext(ctx, `SELECT `+recordColumns("s")+` FROM morango_store s WHERE s.id IN (?`+
		strings.Repeat(",?", len(batch)-1)+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("read local records: %w", err)
	}
	defer rows.Close()
	local := make(map[string]*Record, len(batch))
	for rows.Next() {
		r := new(Record)
		if err := scanRecord(rows, r); err != nil {
			return nil, fmt.Errorf("read local record: %w", err)
		}
		local[r.ID] = r
	}
	return local, rows.Err()
}

func (im *Import) write(ctx context.Context, in, cur *Record, out merge.Result) error {
	st := out.State
	base := in
	if cur != nil {
		base = cur // identity fields never move
	}
	selfRef := cur
	if selfRef == nil || out.Dirty {
		selfRef = in
	}
	_, err := im.upsert.ExecContext(ctx, base.ID, base.Profile, st.Head.Serialized, st.Head.Deleted, st.Head.HardDeleted,
		st.Head.Instance, st.Head.Counter, base.Partition, base.SourceID, base.ModelName, merge.EncodeSiblings(st.Siblings),
		selfRef.SelfRefFK, out.Dirty || cur == nil, im.transferID)
	if err != nil {
		return fmt.Errorf("write record %s: %w", in.ID, err)
	}
	for inst, c := range st.History {
		if _, err := im.history.ExecContext(ctx, base.ID, inst, c); err != nil {
			return fmt.Errorf("write history of %s: %w", in.ID, err)
		}
	}
	return nil
}

// stateOf returns a record's merge state.
func stateOf(r *Record) (merge.State, error) {
	sib, err := merge.DecodeSiblings(r.Conflicting)
	if err != nil {
		return merge.State{}, fmt.Errorf("conflicting versions: %w", err)
	}
	return merge.State{
		Head: merge.Version{Instance: r.LastSavedInstance, Counter: r.LastSavedCounter,
			Serialized: r.Serialized, Deleted: r.Deleted, HardDeleted: r.HardDeleted},
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
	if im.res.Deserialize, err = im.db.deserialize(ctx, im.tx); err != nil {
		return nil, err
	}
	if a.TransferID != "" {
		_, err := im.tx.ExecContext(ctx, `INSERT INTO morango_appliedbundle (transfer_id, sha256, sender_instance_id, records, applied_at)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (transfer_id) DO NOTHING`, a.TransferID, a.SHA256, a.SenderInstance, a.Records, now())
		if err != nil {
			return nil, fmt.Errorf("record applied bundle: %w", err)
		}
	}
	if err := im.tx.Commit(); err != nil {
		return nil, fmt.Errorf("commit import: %w", err)
	}
	im.done = true
	return &im.res, nil
}

// AppliedBundle reports whether the bundle transferID has been applied.
func (db *DB) AppliedBundle(ctx context.Context, transferID string) (bool, error) {
	var n int
	err := db.r.QueryRowContext(ctx, `SELECT count(*) FROM morango_appliedbundle WHERE transfer_id = ?`, transferID).Scan(&n)
	return n > 0, err
}
