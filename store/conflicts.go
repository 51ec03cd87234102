package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/morango-sync/morango/merge"
)

// Conflict is a record that holds concurrent versions: the one the app
// shows and the ones that lost to it under the model's rule.
type Conflict struct {
	Model     string `json:"model"`
	ID        string `json:"id"`
	Partition string `json:"partition"`
	// Shown is the version in the app's table.
	Shown merge.Version `json:"shown"`
	// Lost are the concurrent versions that lost, sorted by dot.
	Lost []merge.Version `json:"lost"`
}

// VersionName names a version as Resolve accepts it: "instance:counter".
func VersionName(v merge.Version) string {
	return v.Instance + ":" + strconv.FormatInt(v.Counter, 10)
}

// Conflicts calls fn for each record of model (every model if model is "")
// that holds versions which lost a conflict, in (model, id) order. It reads
// only.
func (db *DB) Conflicts(ctx context.Context, model string, fn func(Conflict) error) error {
	q := `SELECT ` + recordColumns("s") + ` FROM morango_store s
		WHERE s.profile = ? AND s.conflicting_serialized_data <> ''`
	args := []any{db.profile.Name}
	if model != "" {
		if db.profile.Model(model) == nil {
			return withHint(fmt.Errorf("the profile %s has no model %q", db.profile.Name, model),
				"see the models with: morango status --db %s", db.path)
		}
		q += ` AND s.model_name = ?`
		args = append(args, model)
	}
	rows, err := db.r.QueryContext(ctx, q+` ORDER BY s.model_name, s.id`, args...)
	if err != nil {
		return fmt.Errorf("read conflicts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r Record
		if err := scanRecord(rows, &r); err != nil {
			return fmt.Errorf("read conflicts: %w", err)
		}
		st, err := stateOf(&r)
		if err != nil {
			return fmt.Errorf("record %s: %w", r.ID, err)
		}
		lost := st.Conflicts()
		if len(lost) == 0 {
			continue // tombstones only
		}
		if err := fn(Conflict{Model: r.ModelName, ID: r.ID, Partition: r.Partition, Shown: st.Head, Lost: lost}); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Replaced is a version or an app change this device held that was
// replaced without taking part in a merge, as morango_conflictlog keeps
// it: the head of a record that had not reached the app when the app
// changed the row, or an app change that could not become a version
// (outside what this device may write, say; Version.Instance is "" and
// Counter 0) when the record's data replaced it. Kept on this device only.
type Replaced struct {
	Seq      int64         `json:"seq"`
	Model    string        `json:"model"`
	ID       string        `json:"id"`
	Version  merge.Version `json:"version"`
	LoggedAt string        `json:"logged_at"`
}

// Replaced calls fn for each replaced version or change this device kept
// (of model, or every model if model is ""), oldest first. It reads only.
func (db *DB) Replaced(ctx context.Context, model string, fn func(Replaced) error) error {
	q := `SELECT seq, model_name, record_id, instance_id, counter, serialized, deleted, logged_at FROM morango_conflictlog`
	var args []any
	if model != "" {
		q += ` WHERE model_name = ?`
		args = append(args, model)
	}
	rows, err := db.r.QueryContext(ctx, q+` ORDER BY seq`, args...)
	if err != nil {
		return fmt.Errorf("read replaced changes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r Replaced
		if err := rows.Scan(&r.Seq, &r.Model, &r.ID, &r.Version.Instance, &r.Version.Counter, &r.Version.Serialized,
			&r.Version.Deleted, &r.LoggedAt); err != nil {
			return fmt.Errorf("read replaced changes: %w", err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return rows.Err()
}

// ErrNoConflict is returned by Resolve for a record that holds no
// conflicting versions (any more).
var ErrNoConflict = errors.New("the record has no conflicting versions")

// Resolution is what Resolve did.
type Resolution struct {
	ID string `json:"id"`
	// Kept is the version whose data the record now holds.
	Kept merge.Version `json:"kept"`
	// Version is the new version that carries the decision to other devices.
	Version merge.Version `json:"version"`
	// Pending is set when the app's table could not take the data yet (see
	// morango status); the decision is recorded all the same.
	Pending string `json:"pending,omitempty"`
}

// Resolve ends the conflict of record id by keeping the data of one of its
// versions, named "instance:counter" (an instance id prefix of at least 8
// characters will do). The kept data becomes a new version written by this
// device, which supersedes every version the record holds wherever it
// travels, as an edit in the app would. The app's row is updated in the
// same transaction. App changes not yet serialized are serialized first.
func (db *DB) Resolve(ctx context.Context, id, keep string) (*Resolution, error) {
	// instance:counter, or the instance alone when the record holds one
	// version of it; at least 8 characters of the instance.
	inst, ctr, ok := strings.Cut(keep, ":")
	counter, err := int64(-1), error(nil)
	if ok {
		counter, err = strconv.ParseInt(ctr, 10, 64)
	}
	if err != nil || len(inst) < 8 {
		return nil, withHint(fmt.Errorf("version %q is not instance:counter", keep),
			"copy the version from: morango conflicts --db %s", db.path)
	}
	var res *Resolution
	err = db.writeTx(ctx, func(tx *sql.Tx) error {
		if _, err := db.serialize(ctx, tx); err != nil {
			return err
		}
		if err := db.mayWrite(ctx, tx, id, "resolve", "the decision"); err != nil {
			return err
		}
		var r Record
		err := scanRecord(tx.QueryRowContext(ctx, `SELECT `+recordColumns("s")+` FROM morango_store s
			WHERE s.id = ? AND s.profile = ?`, id, db.profile.Name), &r)
		if errors.Is(err, sql.ErrNoRows) {
			return withHint(fmt.Errorf("no record %s", id), "list the conflicts with: morango conflicts --db %s", db.path)
		}
		if err != nil {
			return fmt.Errorf("read record %s: %w", id, err)
		}
		st, err := stateOf(&r)
		if err != nil {
			return fmt.Errorf("record %s: %w", id, err)
		}
		lost := st.Conflicts()
		if len(lost) == 0 {
			return fmt.Errorf("record %s: %w (an edit or another device's decision has settled it)", id, ErrNoConflict)
		}
		var chosen []merge.Version
		for _, v := range append([]merge.Version{st.Head}, lost...) {
			if (counter < 0 || v.Counter == counter) && strings.HasPrefix(v.Instance, inst) {
				chosen = append(chosen, v)
			}
		}
		if len(chosen) != 1 {
			return withHint(fmt.Errorf("record %s has no single version %s", id, keep),
				"copy the version from: morango conflicts --db %s", db.path)
		}
		if !chosen[0].Deleted {
			if err := db.mayWriteData(ctx, tx, r.ModelName, id, r.Partition, chosen[0].Serialized, "resolve"); err != nil {
				return err
			}
		}
		me, c, err := db.nextCounter(ctx, tx)
		if err != nil {
			return err
		}
		v := merge.Version{Instance: me, Counter: c, Serialized: chosen[0].Serialized, Deleted: chosen[0].Deleted}
		next := merge.Edit(&st, v)
		selfRef := r.SelfRefFK
		if m := db.profile.Model(r.ModelName); m != nil && m.SelfRef() != "" {
			selfRef = selfRefOf(v.Serialized, m.SelfRef())
		}
		_, err = tx.ExecContext(ctx, `UPDATE morango_store SET serialized = ?, deleted = ?, hard_deleted = 0,
			last_saved_instance = ?, last_saved_counter = ?, conflicting_serialized_data = ?, _self_ref_fk = ?,
			dirty_bit = 1, deserialization_error = '', last_transfer_session_id = NULL WHERE id = ?`,
			v.Serialized, v.Deleted, me, c, merge.EncodeSiblings(next.Siblings), selfRef, id)
		if err == nil {
			_, err = tx.ExecContext(ctx, `INSERT INTO morango_recordmaxcounter (store_model_id, instance_id, counter) VALUES (?, ?, ?)
				ON CONFLICT (store_model_id, instance_id) DO UPDATE SET counter = max(counter, excluded.counter)`, id, me, c)
		}
		if err == nil {
			_, err = tx.ExecContext(ctx, `INSERT INTO morango_databasemaxcounter (instance_id, partition, counter) VALUES (?, '', ?)
				ON CONFLICT (instance_id, partition) DO UPDATE SET counter = max(counter, excluded.counter)`, me, c)
		}
		if err != nil {
			return fmt.Errorf("record the decision on %s: %w", id, err)
		}
		if _, err := db.deserialize(ctx, tx); err != nil {
			return err
		}
		res = &Resolution{ID: id, Kept: chosen[0], Version: v}
		var dirty bool
		err = tx.QueryRowContext(ctx, `SELECT dirty_bit, deserialization_error FROM morango_store WHERE id = ?`, id).Scan(&dirty, &res.Pending)
		if err != nil {
			return fmt.Errorf("read record %s: %w", id, err)
		}
		if !dirty {
			res.Pending = ""
		} else if res.Pending == "" {
			res.Pending = "waiting for a row it refers to"
		}
		return nil
	})
	return res, err
}
