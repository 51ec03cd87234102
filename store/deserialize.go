package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/morango-sync/morango/certs"
	"github.com/morango-sync/morango/profile"
	sqlite3 "modernc.org/sqlite/lib"
)

// DeserializeResult says what a deserialization did.
type DeserializeResult struct {
	Written int64 `json:"written"`
	Deleted int64 `json:"deleted"`
	// Pending counts records that could not be written yet (a foreign-key
	// target is missing, or the app's constraints refused the row); they are
	// retried by every later deserialization.
	Pending int64 `json:"pending"`
}

// Deserialize writes the store's dirty records into the app's tables, in one
// transaction. Local app changes are serialized first, so they take part in
// merging instead of being overwritten.
func (db *DB) Deserialize(ctx context.Context) (DeserializeResult, error) {
	var res DeserializeResult
	// Many changes are serialized in transactions of their own first, so
	// that the app does not wait for them (as an import does).
	if _, err := db.SerializeFirst(ctx); err != nil {
		return res, err
	}
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		if _, err := db.serialize(ctx, tx); err != nil {
			return err
		}
		var err error
		res, err = db.deserialize(ctx, tx)
		return err
	})
	return res, err
}

// RetryPending tries again to write the records waiting to go into the
// app's tables (pending: a parent was missing, or the app refused the row),
// as every import does at its end. It writes nothing and returns false when
// no record waits. An app that has removed what was in a record's way (a
// row holding the same unique value, say) sees the record written without
// waiting for another import.
func (db *DB) RetryPending(ctx context.Context) (DeserializeResult, bool, error) {
	var waiting bool
	err := db.r.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM morango_store WHERE dirty_bit AND profile = ?)`,
		db.profile.Name).Scan(&waiting)
	if err != nil || !waiting {
		return DeserializeResult{}, false, err
	}
	res, err := db.Deserialize(ctx)
	return res, err == nil, err
}

// incomingTable lists, by model and store rowid, the records an import
// merged whose head changed: they are to be deserialized like the records
// whose dirty bit is set, without the cost of setting and clearing that bit
// on every incoming record. Those that cannot be written get the bit.
const incomingTable = `CREATE TEMP TABLE IF NOT EXISTS morango_incoming (model TEXT NOT NULL, rid INTEGER NOT NULL,
	PRIMARY KEY (model, rid)) WITHOUT ROWID`

// deserialize writes the records to deserialize — dirty store rows and
// those listed in temp.morango_incoming — into the app tables, parents
// before children. A row whose foreign-key target is missing stays dirty
// with the reason in deserialization_error; a row whose target is deleted
// is deleted too (the next serialization records that as a deletion).
// Columns the local table lacks are ignored; columns the record lacks keep
// their default (new rows) or their value (existing rows).
//
// Each model's records are listed by store rowid in temp.morango_todo, and
// every statement reaches the store through that list: rows are read and
// written in the order they lie in the file.
func (db *DB) deserialize(ctx context.Context, tx *sql.Tx) (DeserializeResult, error) {
	var res DeserializeResult
	d := deserializer{db: db, tx: tx}
	if err := d.exec(ctx,
		`INSERT INTO morango_applying (active) VALUES (1)`,
		incomingTable,
		`CREATE TEMP TABLE IF NOT EXISTS morango_todo (rid INTEGER PRIMARY KEY)`,
		`CREATE TEMP TABLE IF NOT EXISTS morango_ready_rows (rid INTEGER PRIMARY KEY)`,
		`CREATE TEMP TABLE IF NOT EXISTS morango_fkdeleted (rid INTEGER PRIMARY KEY, mint INTEGER NOT NULL)`,
		`CREATE TEMP TABLE IF NOT EXISTS morango_kept (rid INTEGER PRIMARY KEY)`,
		`CREATE TEMP TABLE IF NOT EXISTS morango_replaced (model TEXT NOT NULL, id TEXT NOT NULL,
			serialized TEXT NOT NULL, deleted INTEGER NOT NULL, PRIMARY KEY (model, id)) WITHOUT ROWID`,
		`DELETE FROM temp.morango_kept`,
		`DELETE FROM temp.morango_replaced`,
		`CREATE TEMP TABLE IF NOT EXISTS morango_fkgone (model TEXT NOT NULL, id TEXT NOT NULL, waits INTEGER NOT NULL,
			PRIMARY KEY (model, id)) WITHOUT ROWID`,
		`DELETE FROM temp.morango_fkgone`,
	); err != nil {
		return res, err
	}
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM morango_dirty WHERE error <> '')`).Scan(&d.waiting); err != nil {
		return res, err
	}
	var err error
	if d.apps, err = db.appWrites(ctx, tx); err != nil {
		return res, err
	}
	for _, m := range db.profile.Ordered() {
		if err := d.model(ctx, m, &res); err != nil {
			return res, fmt.Errorf("deserialize %s: %w", m.Name, err)
		}
	}
	if d.apps {
		if err := db.endAppWrites(ctx, tx); err != nil {
			return res, err
		}
	}
	if err := d.exec(ctx, `DELETE FROM morango_applying`, `DELETE FROM temp.morango_incoming`, `DELETE FROM temp.morango_todo`,
		`DELETE FROM temp.morango_ready_rows`, `DELETE FROM temp.morango_fkdeleted`, `DELETE FROM temp.morango_fkgone`,
		`DELETE FROM temp.morango_kept`); err != nil {
		return res, err
	}
	err = tx.QueryRowContext(ctx, `SELECT count(*) FROM morango_store WHERE dirty_bit AND profile = ?`, db.profile.Name).Scan(&res.Pending)
	return res, err
}

type deserializer struct {
	db *DB
	tx *sql.Tx
	// Of the current model: left counts the records on the list, dirty
	// those that came with their dirty bit set (the others, incoming, have
	// neither dirty bit nor error to clear).
	left, dirty int64
	// writable is an SQL condition on s.partition: this device may write
	// the partition (see DB.writeScope); "true" when it holds no
	// certificate's key. Empty until fkDeleted needs it.
	writable string
	// waiting: some app change waits in morango_dirty with an error (it
	// could not become a version). A record written into the app, or
	// deleted from it, replaces the change of its row, which then waits
	// no more.
	waiting bool
	// apps: the app's own triggers may write rows as the engine writes
	// others; each write names its rows first (see appWrites).
	apps bool
}

func (d *deserializer) exec(ctx context.Context, stmts ...string) error {
	for _, q := range stmts {
		start := time.Now()
		_, err := d.tx.ExecContext(ctx, q)
		since(q, start)
		if err != nil {
			return fmt.Errorf("%w (in %.120s)", err, q)
		}
	}
	return nil
}

func (d *deserializer) count(ctx context.Context, q string) (int64, error) {
	r, err := d.tx.ExecContext(ctx, q)
	if err != nil {
		return 0, fmt.Errorf("%w (in %.120s)", err, q)
	}
	return r.RowsAffected()
}

// todo joins the model's records still to deserialize to their store rows,
// aliased s.
const todo = `temp.morango_todo t CROSS JOIN morango_store s ON s.rowid = t.rid`

// done takes the records whose rowids the subquery rids selects off the
// list: their dirty bit and error are cleared, and so is an app change of
// their rows that waits (see deserializer.waiting). When they were the last
// ones, the list is left as it is.
func (d *deserializer) done(ctx context.Context, rids string) (int64, error) {
	if d.waiting {
		// A hard deletion that waited goes with it (see serializer.hardDelete).
		waited := `SELECT d.model, d.id FROM morango_dirty d WHERE ` + waitedSQL(d.apps, "d") + `
			AND (d.model, d.id) IN (SELECT s.model_name, s.id FROM morango_store s WHERE s.rowid IN (%s))`
		if err := d.exec(ctx,
			// The changes the rows held, noted before they were written
			// (noteWaiting), are kept.
			fmt.Sprintf(`INSERT INTO morango_conflictlog (record_id, model_name, instance_id, counter, serialized, deleted, logged_at)
				SELECT r.id, r.model, '', 0, r.serialized, r.deleted, %s FROM temp.morango_replaced r
				WHERE (r.model, r.id) IN (`+waited+`)`, literal(now()), rids),
			fmt.Sprintf(`DELETE FROM temp.morango_replaced WHERE (model, id) IN (`+waited+`)`, rids),
			fmt.Sprintf(`DELETE FROM morango_harddeletedmodels WHERE id IN (SELECT id FROM (`+waited+`))`, rids),
			fmt.Sprintf(`DELETE FROM morango_dirty WHERE (model, id) IN (`+waited+`)`, rids)); err != nil {
			return 0, err
		}
	}
	if d.dirty > 0 {
		if err := d.exec(ctx, `UPDATE morango_store SET dirty_bit = 0, deserialization_error = ''
			WHERE rowid IN (`+rids+`) AND (dirty_bit OR deserialization_error <> '')`); err != nil {
			return 0, err
		}
	}
	var n int64
	if err := d.tx.QueryRowContext(ctx, `SELECT count(*) FROM (`+rids+`)`).Scan(&n); err != nil {
		return 0, err
	}
	if n >= d.left {
		d.left = 0
		return n, d.exec(ctx, `DELETE FROM temp.morango_todo`)
	}
	n, err := d.count(ctx, `DELETE FROM temp.morango_todo WHERE rid IN (`+rids+`)`)
	d.left -= n
	return n, err
}

func (d *deserializer) model(ctx context.Context, m *profile.Model, res *DeserializeResult) error {
	t := d.db.schema[m.Table]
	table, model := quote(m.Table), literal(m.Name)

	// The records to deserialize: dirty ones and incoming ones.
	if err := d.exec(ctx, `DELETE FROM temp.morango_todo`); err != nil {
		return err
	}
	var err error
	d.dirty, err = d.count(ctx, fmt.Sprintf(`INSERT INTO temp.morango_todo (rid) SELECT s.rowid FROM morango_store s
			WHERE s.model_name = %s AND s.profile = %s AND s.dirty_bit`, model, literal(d.db.profile.Name)))
	if err != nil {
		return err
	}
	if err := d.exec(ctx, fmt.Sprintf(`INSERT INTO temp.morango_todo (rid) SELECT rid FROM temp.morango_incoming
		WHERE model = %s ON CONFLICT DO NOTHING`, model)); err != nil {
		return err
	}
	if err := d.tx.QueryRowContext(ctx, `SELECT count(*) FROM temp.morango_todo`).Scan(&d.left); err != nil {
		return err
	}
	if d.left == 0 {
		return nil
	}

	// Deleted records leave the app. The partial index of deleted records
	// says at once whether the model has any.
	var deleted bool
	if err := d.tx.QueryRowContext(ctx, fmt.Sprintf(`SELECT EXISTS (SELECT 1 FROM morango_store WHERE deleted AND model_name = %s)`,
		model)).Scan(&deleted); err != nil {
		return err
	}
	if deleted {
		// A row the app refuses to delete stays, and its record waits.
		if err := d.remove(ctx, table, syncedColumns(t, m), `SELECT t.rid FROM `+todo+` WHERE s.deleted`); err != nil {
			return err
		}
		n, err := d.done(ctx, `SELECT t.rid FROM `+todo+` WHERE s.deleted AND t.rid NOT IN (SELECT rid FROM temp.morango_kept)`)
		if err != nil {
			return err
		}
		res.Deleted += n
	}

	// Records whose foreign-key target is deleted in the store are deleted
	// too, here and (through the next serialization) everywhere; those this
	// device may not write leave the app and wait.
	if err := d.fkDeleted(ctx, m); err != nil {
		return err
	}

	// Rows are written once every foreign-key target exists in the app;
	// a self-referencing model is written in waves, parents first. When
	// the waves stop, the rows of parent cycles are written together
	// (writeParentCycles), and the waves go on with the rows they freed.
	live := `NOT s.deleted
		AND NOT EXISTS (SELECT 1 FROM temp.morango_fkgone g WHERE g.model = ` + model + ` AND g.id = s.id)
		AND t.rid NOT IN (SELECT rid FROM temp.morango_kept)`
	ready := `SELECT t.rid FROM ` + todo + ` WHERE ` + live
	if fk := d.db.fkReadySQL(m, ""); fk != "" {
		ready += " AND " + fk
	}
	cols := syncedColumns(t, m)
	for d.left > 0 {
		if err := d.exec(ctx, `DELETE FROM temp.morango_ready_rows`, `INSERT INTO temp.morango_ready_rows (rid) `+ready); err != nil {
			return err
		}
		n, err := d.write(ctx, t, cols)
		if err != nil {
			return err
		}
		res.Written += n
		if n == 0 && m.SelfRef() != "" && d.left > 0 {
			if n, err = d.writeParentCycles(ctx, m, t, cols, live); err != nil {
				return err
			}
			res.Written += n
		}
		if n == 0 || m.SelfRef() == "" {
			break
		}
	}

	// What is left is pending: it keeps (or gets) its dirty bit, and the
	// reason.
	reason := "deserialization_error"
	var reasons []string
	for _, col := range slices.Sorted(maps.Keys(m.ForeignKeys)) {
		target := m.ForeignKeys[col]
		tm := d.db.profile.Model(target)
		if tm == nil {
			continue
		}
		reasons = append(reasons, fmt.Sprintf(`WHEN %[5]s THEN %[3]s || json_extract(s.serialized, %[1]s) || %[6]s
			WHEN %[7]s THEN %[3]s || json_extract(s.serialized, %[1]s) || %[8]s
			WHEN json_type(s.serialized, %[1]s) NOT IN ('null') AND NOT EXISTS (SELECT 1 FROM %[2]s f WHERE f.id = json_extract(s.serialized, %[1]s))
			THEN %[3]s || json_extract(s.serialized, %[1]s) || %[4]s`, jsonPath(col), quote(tm.Table),
			literal(fmt.Sprintf("%s: %s ", col, target)), literal(" does not exist yet"),
			fkGoneSQL(col, target), literal(" is deleted; a device that may write this record's partition deletes it"),
			fkWaitsSQL(col, target), literal(" is out of the app: its own parent is deleted")))
	}
	if len(reasons) > 0 {
		// A row the app refused to delete keeps that reason.
		reason = fmt.Sprintf(`CASE WHEN s.rowid IN (SELECT rid FROM temp.morango_kept) THEN deserialization_error %s ELSE deserialization_error END`,
			strings.Join(reasons, " "))
	}
	if d.left == 0 {
		return nil
	}
	// What the app shows of them is noted (morango_shown), unless the app
	// changed the row since the last serialization: that change is not
	// what the engine last showed. A row the app did not change shows what
	// the engine left there, and that may have changed since an earlier
	// note: the row may have left the app with its deleted parent.
	return d.exec(ctx, fmt.Sprintf(`UPDATE morango_store AS s SET dirty_bit = 1, deserialization_error = %s
		WHERE s.rowid IN (SELECT rid FROM temp.morango_todo)`, reason),
		fmt.Sprintf(`INSERT INTO morango_shown (id, serialized)
			SELECT s.id, (SELECT %s FROM %s a WHERE a.id = s.id) FROM %s
			WHERE NOT EXISTS (SELECT 1 FROM morango_dirty w WHERE w.model = %s AND w.id = s.id)
			ON CONFLICT (id) DO UPDATE SET serialized = excluded.serialized`, jsonObjectSQL("a", cols), table, todo, model))
}

// fkDeleted deletes the records of m to deserialize whose foreign-key
// target is a deleted record, or a record this deserialization deleted for
// the same reason (temp.morango_fkgone): their app rows go, and they are
// marked for the next serialization to record the deletion.
//
// A record this device may not write (shared read-only data on a learner's
// device) gets no version of its own, which could never leave the device
// and would outweigh every later edit: it leaves the app and waits,
// pending, for the deletion from a device that may write it, or for its
// parent to come back. Its children, whoever may write them (the learner's
// own logs of it), wait with it: they leave the app, and nothing records
// their deletion.
//
// A self-referencing model cascades in waves. The deleted records of the
// targets are found through the partial index morango_store_deleted; most
// of the time there are none, and the records need not be read.
func (d *deserializer) fkDeleted(ctx context.Context, m *profile.Model) error {
	if len(m.ForeignKeys) == 0 {
		return nil
	}
	var targets, gone, waits []string
	for _, col := range slices.Sorted(maps.Keys(m.ForeignKeys)) {
		target := m.ForeignKeys[col]
		targets = append(targets, literal(target))
		gone = append(gone, fkGoneSQL(col, target))
		waits = append(waits, fkWaitsSQL(col, target))
	}
	in := strings.Join(targets, ", ")
	var found bool
	err := d.tx.QueryRowContext(ctx, fmt.Sprintf(`SELECT EXISTS (SELECT 1 FROM morango_store p WHERE p.deleted AND p.model_name IN (%[1]s))
		OR EXISTS (SELECT 1 FROM temp.morango_fkgone g WHERE g.model IN (%[1]s))`, in)).Scan(&found)
	if err != nil || !found {
		return err
	}
	if d.writable == "" {
		w, held, err := d.db.writeScope(ctx)
		if err != nil {
			return err
		}
		d.writable = "true"
		if held {
			d.writable = partitionIn(w, "s.partition")
		}
	}
	model := literal(m.Name)
	goneAny, waitsAny := strings.Join(gone, " OR "), strings.Join(waits, " OR ")
	rows := `temp.morango_fkdeleted f CROSS JOIN morango_store s ON s.rowid = f.rid`
	for d.left > 0 {
		if err := d.exec(ctx, `DELETE FROM temp.morango_fkdeleted`); err != nil {
			return err
		}
		// mint: this device deletes the record (and the next
		// serialization records it); the others wait.
		n, err := d.count(ctx, fmt.Sprintf(`INSERT INTO temp.morango_fkdeleted (rid, mint)
			SELECT rid, mint FROM (SELECT t.rid, coalesce((%[2]s) AND NOT (%[3]s) AND %[4]s, false) AS mint,
				coalesce((%[2]s) OR (%[3]s), false) AS hit
				FROM %[1]s WHERE NOT s.deleted AND NOT EXISTS (SELECT 1 FROM temp.morango_fkgone g WHERE g.model = %[5]s AND g.id = s.id)
					AND t.rid NOT IN (SELECT rid FROM temp.morango_kept))
			WHERE hit`,
			todo, goneAny, waitsAny, d.writable, model))
		if err != nil || n == 0 {
			return err
		}
		// A row the app refuses to delete stays in the app: its record is
		// neither deleted nor out of the app, and waits.
		if err := d.remove(ctx, quote(m.Table), syncedColumns(d.db.schema[m.Table], m), `SELECT rid FROM temp.morango_fkdeleted`); err != nil {
			return err
		}
		err = d.exec(ctx,
			`DELETE FROM temp.morango_fkdeleted WHERE rid IN (SELECT rid FROM temp.morango_kept)`,
			// The deletion is this device's to record: an error an earlier
			// edit of the row left (its app row is gone now) must not hold
			// it back.
			fmt.Sprintf(`INSERT INTO morango_dirty (model, id) SELECT %s, s.id FROM %s WHERE f.mint
				ON CONFLICT (model, id) DO UPDATE SET error = ''`, model, rows),
			fmt.Sprintf(`INSERT INTO temp.morango_fkgone (model, id, waits) SELECT %s, s.id, NOT f.mint FROM %s WHERE true ON CONFLICT DO NOTHING`, model, rows),
		)
		if err != nil {
			return err
		}
		// The others stay on the list, and end pending.
		if _, err := d.done(ctx, `SELECT rid FROM temp.morango_fkdeleted WHERE mint`); err != nil {
			return err
		}
	}
	return nil
}

// fkGoneSQL is the condition, on the store row aliased s, that the record's
// reference col names a deleted record of target, or one this
// deserialization deleted (temp.morango_fkgone). A NULL reference names
// none (IN alone would give NULL).
func fkGoneSQL(col, target string) string {
	return fmt.Sprintf(`coalesce(json_extract(s.serialized, %[1]s) IN (SELECT p.id FROM morango_store p WHERE p.deleted AND p.model_name = %[2]s
				UNION ALL SELECT g.id FROM temp.morango_fkgone g WHERE g.model = %[2]s AND NOT g.waits), false)`, jsonPath(col), literal(target))
}

// fkWaitsSQL is the condition that the reference col names a record of
// target that waits out of the app for its own deleted parent.
func fkWaitsSQL(col, target string) string {
	return fmt.Sprintf(`coalesce(json_extract(s.serialized, %[1]s) IN (SELECT g.id FROM temp.morango_fkgone g WHERE g.model = %[2]s AND g.waits), false)`,
		jsonPath(col), literal(target))
}

// partitionIn is an SQL condition: the partition col lies in f.
func partitionIn(f certs.Filter, col string) string {
	if len(f) == 0 {
		return "false"
	}
	var or []string
	for _, p := range f {
		or = append(or, fmt.Sprintf(`substr(%s, 1, %d) = %s`, col, utf8.RuneCountInString(p), literal(p)))
	}
	return "(" + strings.Join(or, " OR ") + ")"
}

// remove deletes from the app table the rows of the records whose store
// rowids the subquery rids lists. If the app refuses (a trigger that keeps
// its rows), it deletes them one by one: the rows it keeps stay, their
// records are listed in temp.morango_kept with the reason, and wait. So do
// rows a trigger's RAISE(IGNORE) kept without an error. An error that is
// not the app's refusal (a full disk) ends the deserialization.
func (d *deserializer) remove(ctx context.Context, table string, cols []string, rids string) error {
	if err := d.noteWaiting(ctx, table, cols, `SELECT rid FROM (`+rids+`)`); err != nil {
		return err
	}
	if err := engineWrites(ctx, d.tx, d.apps, `SELECT s.id FROM (`+rids+`) r CROSS JOIN morango_store s ON s.rowid = r.rid`); err != nil {
		return err
	}
	if _, err := d.tx.ExecContext(ctx, `SAVEPOINT morango_remove`); err != nil {
		return err
	}
	_, err := d.tx.ExecContext(ctx, fmt.Sprintf(`DELETE FROM %s WHERE id IN (SELECT s.id FROM (%s) r CROSS JOIN morango_store s ON s.rowid = r.rid)`,
		table, rids))
	if err == nil {
		if _, err := d.tx.ExecContext(ctx, `RELEASE morango_remove`); err != nil {
			return err
		}
		return d.keepIgnored(ctx, table, rids)
	}
	if _, rerr := d.tx.ExecContext(ctx, `ROLLBACK TO morango_remove`); rerr != nil {
		return fmt.Errorf("%w (after %w)", rerr, err)
	}
	if _, rerr := d.tx.ExecContext(ctx, `RELEASE morango_remove`); rerr != nil {
		return rerr
	}
	if !refused(err) {
		return err
	}
	d.db.log.Debug("deletion refused, deleting rows one by one", "table", table, "err", err)
	list, err := rowids(ctx, d.tx, rids)
	if err != nil {
		return err
	}
	for _, rid := range list {
		if _, err := d.tx.ExecContext(ctx, `SAVEPOINT morango_row`); err != nil {
			return err
		}
		_, refusal := d.tx.ExecContext(ctx, fmt.Sprintf(`DELETE FROM %s WHERE id = (SELECT id FROM morango_store WHERE rowid = ?)`, table), rid)
		if refusal != nil {
			if _, err := d.tx.ExecContext(ctx, `ROLLBACK TO morango_row`); err != nil {
				return fmt.Errorf("%w (after %w)", err, refusal)
			}
			if !refused(refusal) {
				return refusal
			}
			if err := d.keep(ctx, rid, "the app refused to delete the row: "+refusal.Error()); err != nil {
				return err
			}
		}
		if _, err := d.tx.ExecContext(ctx, `RELEASE morango_row`); err != nil {
			return err
		}
	}
	return d.keepIgnored(ctx, table, rids)
}

// keepIgnored lists in temp.morango_kept the records of rids whose rows are
// still in the app after their deletion: a trigger's RAISE(IGNORE) skips a
// row without an error.
func (d *deserializer) keepIgnored(ctx context.Context, table, rids string) error {
	list, err := rowids(ctx, d.tx, fmt.Sprintf(`SELECT r.rid FROM (%s) r CROSS JOIN morango_store s ON s.rowid = r.rid
		WHERE r.rid NOT IN (SELECT rid FROM temp.morango_kept) AND EXISTS (SELECT 1 FROM %s a WHERE a.id = s.id)`, rids, table))
	for _, rid := range list {
		if err == nil {
			err = d.keep(ctx, rid, "the app kept the row: a trigger ignored its deletion")
		}
	}
	return err
}

// keep lists the record rid in temp.morango_kept, with the reason.
func (d *deserializer) keep(ctx context.Context, rid int64, reason string) error {
	_, err := d.tx.ExecContext(ctx, `INSERT INTO temp.morango_kept (rid) VALUES (?) ON CONFLICT DO NOTHING`, rid)
	if err == nil {
		_, err = d.tx.ExecContext(ctx, `UPDATE morango_store SET deserialization_error = ? WHERE rowid = ?`, reason, rid)
	}
	return err
}

// rowids returns the rowids a query selects.
func rowids(ctx context.Context, q execer, query string, args ...any) ([]int64, error) {
	return column[int64](ctx, q, query, args...)
}

// column returns the values of the one column a query selects.
func column[T any](ctx context.Context, q execer, query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var list []T
	for rows.Next() {
		var v T
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		list = append(list, v)
	}
	return list, rows.Err()
}

// write upserts the rows listed in temp.morango_ready_rows into the app
// table and takes them off the list. If the app's constraints refuse the
// batch, rows are written one by one (writeEach), rows that hold each
// other's values under a unique index together (breakCycle), and the
// refused ones stay on the list with the reason.
func (d *deserializer) write(ctx context.Context, t *tableInfo, cols []string) (int64, error) {
	const all = `SELECT rid FROM temp.morango_ready_rows`
	if err := d.noteWaiting(ctx, quote(t.Name), cols, all); err != nil {
		return 0, err
	}
	n, ok, err := d.writeBatch(ctx, t, cols, all)
	if err != nil {
		return 0, err
	}
	if ok {
		_, err := d.done(ctx, all)
		return n, err
	}
	// The rows the app refused before (their records wait with a reason)
	// are the likely cause: the others are written together if they can
	// be, so that a row the app refuses for good does not have every
	// later batch of its table written row by row.
	const fresh = `SELECT r.rid FROM temp.morango_ready_rows r CROSS JOIN morango_store s ON s.rowid = r.rid WHERE s.deserialization_error = ''`
	const waited = `SELECT r.rid FROM temp.morango_ready_rows r CROSS JOIN morango_store s ON s.rowid = r.rid WHERE s.deserialization_error <> ''`
	left := all
	var nf, nw int64
	err = d.tx.QueryRowContext(ctx, `SELECT coalesce(sum(s.deserialization_error = ''), 0), coalesce(sum(s.deserialization_error <> ''), 0)
		FROM temp.morango_ready_rows r CROSS JOIN morango_store s ON s.rowid = r.rid`).Scan(&nf, &nw)
	if err != nil {
		return 0, err
	}
	if nf > 0 && nw > 0 {
		// writeBatch writes nothing, and returns 0, when it cannot.
		if n, ok, err = d.writeBatch(ctx, t, cols, fresh); err != nil {
			return 0, err
		}
		if ok {
			if _, err := d.done(ctx, fresh); err != nil {
				return 0, err
			}
			left = waited
		}
	}
	rids, err := rowids(ctx, d.tx, left)
	if err != nil {
		return 0, err
	}
	d.db.log.Debug("batch refused, writing rows one by one", "table", t.Name, "rows", len(rids))
	written, stuck, clash, err := d.writeEach(ctx, t, cols, rids)
	if err != nil {
		return 0, err
	}
	var cycle []int64
	for _, rid := range stuck {
		if clash[rid] {
			cycle = append(cycle, rid)
		}
	}
	m, err := d.breakCycle(ctx, t, cols, cycle)
	return n + written + m, err
}

// writeBatch writes the records the subquery rids lists in one statement
// per table, and returns how many rows it wrote and whether it did: if the
// app refuses one of the rows, or its trigger skips one without an error
// (RAISE(IGNORE)), nothing is written.
func (d *deserializer) writeBatch(ctx context.Context, t *tableInfo, cols []string, rids string) (int64, bool, error) {
	if _, err := d.tx.ExecContext(ctx, `SAVEPOINT morango_write`); err != nil {
		return 0, false, err
	}
	n, err := d.upsert(ctx, t, cols, rids)
	if err == nil {
		// A trigger's RAISE(IGNORE) skips a row without an error: the
		// rows are then written one by one, to find which.
		var want int64
		err = d.tx.QueryRowContext(ctx, `SELECT count(*) FROM (`+rids+`)`).Scan(&want)
		if err == nil && n < want {
			if err = d.ignored(ctx, t, cols, rids); err == nil {
				n = want // the rows left as they were show their records
			}
		}
	}
	if err == nil {
		_, err = d.tx.ExecContext(ctx, `RELEASE morango_write`)
		return n, err == nil, err
	}
	if _, rerr := d.tx.ExecContext(ctx, `ROLLBACK TO morango_write`); rerr != nil {
		return 0, false, rerr
	}
	if _, rerr := d.tx.ExecContext(ctx, `RELEASE morango_write`); rerr != nil {
		return 0, false, rerr
	}
	if !refused(err) && err != errIgnored {
		return 0, false, err
	}
	d.db.log.Debug("batch refused", "table", t.Name, "err", err)
	return 0, false, nil
}

// writeEach writes the records rids one by one, and returns how many it
// wrote, the rowids of those the app refused (sorted), and which of these
// it refused last for a value another row holds under a unique index.
//
// A row may be refused only for a row of the batch not written yet (a
// user renamed before another takes the old name, under a unique index of
// the app). The refused rows wait on a stack; each row written is followed
// by one more try of each, most recent first, so a chain of such rows is
// written in one pass whichever way it runs, among rows refused for good.
// A row is tried at most three times a pass; passes go on while one writes
// some row.
func (d *deserializer) writeEach(ctx context.Context, t *tableInfo, cols []string, rids []int64) (int64, []int64, map[int64]bool, error) {
	var written int64
	clash := map[int64]bool{}
	try := func(rid int64) (bool, error) {
		if _, err := d.tx.ExecContext(ctx, `SAVEPOINT morango_row`); err != nil {
			return false, err
		}
		n, err := d.upsert(ctx, t, cols, fmt.Sprintf("SELECT %d", rid))
		if err == nil && n == 0 {
			err = d.ignored(ctx, t, cols, fmt.Sprintf("SELECT %d", rid))
		}
		ok := err == nil
		if ok {
			written++
			_, err = d.done(ctx, fmt.Sprintf("SELECT %d", rid))
		} else {
			if _, rerr := d.tx.ExecContext(ctx, `ROLLBACK TO morango_row`); rerr != nil {
				return false, rerr
			}
			reason := "the app kept its row: a trigger ignored the write"
			if err != errIgnored {
				if !refused(err) {
					return false, err
				}
				clash[rid] = uniqueClash(err)
				reason = "the app refused the row: " + err.Error()
			}
			_, err = d.tx.ExecContext(ctx, `UPDATE morango_store SET deserialization_error = ? WHERE rowid = ?`, reason, rid)
		}
		if err != nil {
			return false, err
		}
		_, err = d.tx.ExecContext(ctx, `RELEASE morango_row`)
		return ok, err
	}
	const retries = 2 // a pass, after the first try
	for len(rids) > 0 {
		before := written
		var stack, spent []int64 // refused; refused and out of retries
		tried := map[int64]int{}
		for _, rid := range rids {
			ok, err := try(rid)
			if err != nil {
				return 0, nil, nil, err
			}
			if !ok {
				stack = append(stack, rid)
				continue
			}
			var kept []int64 // top first
			for j := len(stack) - 1; j >= 0; j-- {
				r := stack[j]
				ok, err := try(r)
				switch {
				case err != nil:
					return 0, nil, nil, err
				case ok:
				case tried[r]+1 >= retries:
					spent = append(spent, r)
				default:
					tried[r]++
					kept = append(kept, r)
				}
			}
			slices.Reverse(kept)
			stack = kept
		}
		rids = append(stack, spent...)
		slices.Sort(rids)
		if written == before {
			break
		}
	}
	return written, rids, clash, nil
}

// uniqueClash reports whether err is the app refusing a row for a value
// another row holds under a unique index.
func uniqueClash(err error) bool {
	return sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_UNIQUE
}

// breakCycle writes what it can of the records rids, each refused for a
// value that another row holds under a unique index of the app. Rows that
// swap values (users A and B trading names, edited on another device by
// way of a third name) each hold what the other is to take, so no order of
// single writes gets through.
//
// Only records blocked by the app row of another of them take part
// (cycleRows); most refused rows want a value a row outside holds, and
// cost one query per unique index. The app rows of those that take part
// first get a placeholder in one column of each unique index, a column
// every one of the records carries (NULL where the column allows it, else
// "~" and the record's store rowid), which frees every value they held;
// then the records are written one by one as by writeEach; the rows of
// those still refused get their values back. If one cannot (a row written
// took its value), nothing is written: the placeholders never outlive the
// savepoint and the records wait as before. The app's own triggers on the
// table see each update. A unique index on an expression is not freed.
func (d *deserializer) breakCycle(ctx context.Context, t *tableInfo, cols []string, rids []int64) (int64, error) {
	if len(rids) < 2 {
		return 0, nil
	}
	indexes, err := d.uniqueIndexes(ctx, t)
	if err != nil || len(indexes) == 0 {
		return 0, err
	}
	rids, err = d.cycleRows(ctx, t, cols, indexes, rids)
	if err != nil || len(rids) < 2 {
		return 0, err
	}
	held, err := d.placeholders(ctx, t, cols, indexes)
	if err != nil || len(held) == 0 {
		return 0, err
	}
	table := quote(t.Name)
	const rows = `SELECT s.id FROM morango_store s WHERE s.rowid IN (SELECT rid FROM temp.morango_cycle_rows)`
	var sets, restore, keep []string
	for _, c := range held {
		sets = append(sets, fmt.Sprintf("%s = %s", quote(c.name), c.value))
		restore = append(restore, fmt.Sprintf("%[1]s = morango_old.%[1]s", quote(c.name)))
		keep = append(keep, quote(c.name))
	}
	if _, err := d.tx.ExecContext(ctx, `SAVEPOINT morango_cycle`); err != nil {
		return 0, err
	}
	left := d.left // done counts the rows written off; a rollback brings them back
	var written int64
	var stuck []int64
	err = engineWrites(ctx, d.tx, d.apps, rows)
	if err == nil {
		err = d.exec(ctx, `DROP TABLE IF EXISTS temp.morango_cycle`,
			fmt.Sprintf(`CREATE TEMP TABLE morango_cycle AS SELECT id, %s FROM %s WHERE id IN (%s)`, strings.Join(keep, ", "), table, rows),
			fmt.Sprintf(`UPDATE %s SET %s WHERE id IN (%s)`, table, strings.Join(sets, ", "), rows))
	}
	if err == nil {
		written, stuck, _, err = d.writeEach(ctx, t, cols, rids)
	}
	if err == nil && written > 0 && len(stuck) > 0 {
		err = d.exec(ctx, `DELETE FROM temp.morango_cycle_rows`,
			`INSERT INTO temp.morango_cycle_rows (rid) SELECT value FROM json_each(`+literal(jsonInts(stuck))+`)`)
		if err == nil {
			err = engineWrites(ctx, d.tx, d.apps, rows)
		}
		if err == nil {
			err = d.exec(ctx, fmt.Sprintf(`UPDATE %s SET %s FROM temp.morango_cycle AS morango_old WHERE morango_old.id = %s.id AND morango_old.id IN (%s)`,
				table, strings.Join(restore, ", "), table, rows))
		}
	}
	if err == nil && written > 0 {
		err = d.exec(ctx, `RELEASE morango_cycle`, `DROP TABLE temp.morango_cycle`)
		return written, err
	}
	if _, rerr := d.tx.ExecContext(ctx, `ROLLBACK TO morango_cycle`); rerr != nil {
		return 0, rerr
	}
	if _, rerr := d.tx.ExecContext(ctx, `RELEASE morango_cycle`); rerr != nil {
		return 0, rerr
	}
	d.left = left
	if err != nil && !refused(err) {
		return 0, err
	}
	d.db.log.Debug("rows that hold each other's values still refused", "table", t.Name, "rows", len(rids), "err", err)
	return 0, nil
}

// writeParentCycles writes, when the waves of a self-referencing model m
// stop, the records whose parents wait for each other: notes moved under
// each other on two devices at once (a parent cycle a → b → a), or a note
// made its own parent. No wave writes them, since none of their parents
// is in the app. live is the condition, on the records of the list (t
// and s, as in todo), that they are neither deleted nor held back (by a
// deleted target or a row the app kept).
//
// The records taken are those whose row is not in the app yet, whose
// foreign keys but the self-reference find their targets, and whose
// parent is not in the app. Those on a cycle of parents among them
// (parentCycles) are written together by one statement: SQLite checks a
// foreign key the app declares (an immediate one) at the end of the
// statement, when every row of the cycle is in. The waves that follow
// write the records hanging off the cycle, parents first. A record whose
// parent is truly missing still waits. Records whose rows
// the app holds are left to the waves that follow (the upsert updates
// rows before inserting others, and an update naming a parent the insert
// brings would be refused). A batch the app refuses is written as write
// does, one row by one; a declared foreign key then refuses every row of
// a cycle, which waits.
//
// Most deserializations never get here; when records wait for parents
// that are truly missing, this costs one pass over those on the list.
func (d *deserializer) writeParentCycles(ctx context.Context, m *profile.Model, t *tableInfo, cols []string, live string) (int64, error) {
	col := m.SelfRef()
	table := quote(m.Table)
	parent := fmt.Sprintf(`json_extract(s.serialized, %s)`, jsonPath(col))
	taken := live + fmt.Sprintf(` AND %[1]s IS NOT NULL
		AND NOT EXISTS (SELECT 1 FROM %[2]s a WHERE a.id = s.id) AND NOT EXISTS (SELECT 1 FROM %[2]s f WHERE f.id = %[1]s)`, parent, table)
	if fk := d.db.fkReadySQL(m, col); fk != "" {
		taken += " AND " + fk
	}
	err := d.exec(ctx,
		`CREATE TEMP TABLE IF NOT EXISTS morango_parent_cycle (rid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, parent TEXT NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS temp.morango_parent_cycle_parent ON morango_parent_cycle (parent)`,
		`DELETE FROM temp.morango_parent_cycle`)
	if err != nil {
		return 0, err
	}
	n, err := d.count(ctx, fmt.Sprintf(`INSERT INTO temp.morango_parent_cycle (rid, id, parent) SELECT t.rid, s.id, %s FROM %s WHERE %s`,
		parent, todo, taken))
	if err != nil || n == 0 {
		return 0, err
	}
	cycles, err := d.parentCycles(ctx)
	if err != nil || len(cycles) == 0 {
		return 0, err
	}
	d.db.log.Debug("writing rows whose parents wait for each other", "table", m.Table, "rows", len(cycles))
	err = d.exec(ctx, `DELETE FROM temp.morango_parent_cycle`, `DELETE FROM temp.morango_ready_rows`,
		`INSERT INTO temp.morango_ready_rows (rid) SELECT value FROM json_each(`+literal(jsonInts(cycles))+`)`)
	if err != nil {
		return 0, err
	}
	return d.write(ctx, t, cols)
}

// parentCycles returns the rowids of the records of
// temp.morango_parent_cycle that lie on a cycle of parents (each names
// the next as its parent, the last the first; a record its own parent is
// one). The records hanging off a cycle are left to the waves, which
// write them parents first once the cycle is in: written in the cycle's
// statement, each would hold a declared foreign key open until the
// statement's end, and SQLite checks every row inserted meanwhile against
// the whole table. One pass over the records, in Go.
func (d *deserializer) parentCycles(ctx context.Context) ([]int64, error) {
	rows, err := d.tx.QueryContext(ctx, `SELECT rid, id, parent FROM temp.morango_parent_cycle`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	type node struct {
		rid    int64
		parent string
	}
	nodes := map[string]*node{}
	for rows.Next() {
		var n node
		var id string
		if err := rows.Scan(&n.rid, &id, &n.parent); err != nil {
			return nil, err
		}
		nodes[id] = &n
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Walk up from each record not yet seen; a walk that meets a record
	// of its own path has found a cycle.
	const (
		unseen = iota
		onPath
		done
	)
	state := make(map[string]int, len(nodes))
	var cycles []int64
	for start := range nodes {
		var path []string
		id := start
		for {
			n, ok := nodes[id]
			if !ok || state[id] == done {
				break
			}
			if state[id] == onPath {
				for i := len(path) - 1; i >= 0; i-- {
					cycles = append(cycles, nodes[path[i]].rid)
					if path[i] == id {
						break
					}
				}
				break
			}
			state[id] = onPath
			path = append(path, id)
			id = n.parent
		}
		for _, p := range path {
			state[p] = done
		}
	}
	slices.Sort(cycles)
	return cycles, nil
}

// uniqueIndex is a unique index of an app table other than its primary
// key: its columns, "" for an expression.
type uniqueIndex []string

func (d *deserializer) uniqueIndexes(ctx context.Context, t *tableInfo) ([]uniqueIndex, error) {
	names, err := column[string](ctx, d.tx, `SELECT name FROM pragma_index_list(?) WHERE "unique" AND origin <> 'pk'`, t.Name)
	if err != nil {
		return nil, err
	}
	var out []uniqueIndex
	for _, ix := range names {
		cols, err := column[string](ctx, d.tx, `SELECT coalesce(name, '') FROM pragma_index_info(?) ORDER BY seqno`, ix)
		if err != nil {
			return nil, err
		}
		out = append(out, cols)
	}
	return out, nil
}

// cycleRows returns those of the records rids whose rows want, under some
// unique index, the values the app row of another of them holds, and only
// those blocked by another of those in turn: a row blocked only by rows
// outside cannot be written by freeing the others' values. It leaves them
// in temp.morango_cycle_rows.
func (d *deserializer) cycleRows(ctx context.Context, t *tableInfo, cols []string, indexes []uniqueIndex, rids []int64) ([]int64, error) {
	table := quote(t.Name)
	synced := map[string]bool{}
	for _, c := range cols {
		synced[c] = c != "id"
	}
	err := d.exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS morango_cycle_rows (rid INTEGER PRIMARY KEY)`, `DELETE FROM temp.morango_cycle_rows`,
		`INSERT INTO temp.morango_cycle_rows (rid) SELECT value FROM json_each(`+literal(jsonInts(rids))+`)`)
	if err != nil {
		return nil, err
	}
	// The edges: row → the rows whose values it wants, among rids.
	blockers := map[int64][]int64{}
	blocks := map[int64][]int64{}
	for _, ix := range indexes {
		if slices.Contains(ix, "") {
			continue
		}
		var eq []string
		for _, c := range ix {
			// What the record's row will hold: the record's value, or the
			// row's own where the record lacks the key or the column is
			// not synced.
			own := fmt.Sprintf("(SELECT r.%s FROM %s r WHERE r.id = s.id)", quote(c), table)
			want := own
			if synced[c] {
				want = recordValue(c, own)
			}
			eq = append(eq, fmt.Sprintf("a.%s = %s", quote(c), want))
		}
		rows, err := d.tx.QueryContext(ctx, fmt.Sprintf(`SELECT s.rowid, s2.rowid FROM morango_store s
			JOIN %s a ON a.id <> s.id AND %s
			JOIN morango_store s2 ON s2.id = a.id
			WHERE s.rowid IN (SELECT rid FROM temp.morango_cycle_rows) AND s2.rowid IN (SELECT rid FROM temp.morango_cycle_rows)`,
			table, strings.Join(eq, " AND ")))
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var from, to int64
			if err := rows.Scan(&from, &to); err != nil {
				rows.Close()
				return nil, err
			}
			blockers[from] = append(blockers[from], to)
			blocks[to] = append(blocks[to], from)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	// Take off, again and again, the rows no row left blocks.
	out := map[int64]int{}
	var gone []int64
	for _, rid := range rids {
		if out[rid] = len(blockers[rid]); out[rid] == 0 {
			gone = append(gone, rid)
		}
	}
	for len(gone) > 0 {
		rid := gone[len(gone)-1]
		gone = gone[:len(gone)-1]
		for _, r := range blocks[rid] {
			if out[r]--; out[r] == 0 {
				gone = append(gone, r)
			}
		}
	}
	var cycle []int64
	for _, rid := range rids {
		if out[rid] > 0 {
			cycle = append(cycle, rid)
		}
	}
	err = d.exec(ctx, `DELETE FROM temp.morango_cycle_rows`,
		`INSERT INTO temp.morango_cycle_rows (rid) SELECT value FROM json_each(`+literal(jsonInts(cycle))+`)`)
	return cycle, err
}

// jsonInts is a JSON array of the numbers.
func jsonInts(list []int64) string {
	b, _ := json.Marshal(list)
	return string(b)
}

// placeholder is a column of a unique index and the value that frees
// what a row holds under it.
type placeholder struct{ name, value string }

// placeholders returns, for each unique index of the app table t, one of
// its synced columns other than id that every record listed in
// temp.morango_cycle_rows carries, and a value no other row holds: NULL
// where the column allows it (a unique index holds NULLs as distinct),
// else "~" and the record's store rowid. An index on an expression, or
// with no such column, gets none.
func (d *deserializer) placeholders(ctx context.Context, t *tableInfo, cols []string, indexes []uniqueIndex) ([]placeholder, error) {
	carried := map[string]bool{}
	for _, c := range cols {
		if c == "id" {
			continue
		}
		var all bool
		err := d.tx.QueryRowContext(ctx, fmt.Sprintf(`SELECT NOT EXISTS (SELECT 1 FROM morango_store s
			WHERE s.rowid IN (SELECT rid FROM temp.morango_cycle_rows) AND json_type(s.serialized, %s) IS NULL)`, jsonPath(c))).Scan(&all)
		if err != nil {
			return nil, err
		}
		carried[c] = all
	}
	chosen := map[string]bool{}
	var out []placeholder
	for _, ix := range indexes {
		if slices.Contains(ix, "") || slices.ContainsFunc(ix, func(c string) bool { return chosen[c] }) {
			continue // not freed, or freed already
		}
		pick := ""
		for _, c := range ix {
			if ci := t.column(c); ci != nil && carried[c] && (pick == "" || !ci.NotNull && t.column(pick).NotNull) {
				pick = c
			}
		}
		if pick == "" {
			continue
		}
		chosen[pick] = true
		value := fmt.Sprintf(`'~' || (SELECT s.rowid FROM morango_store s WHERE s.id = %s.id)`, quote(t.Name))
		if !t.column(pick).NotNull {
			value = "NULL"
		}
		out = append(out, placeholder{pick, value})
	}
	return out, nil
}

// errIgnored is an app row that a write left as it was, without an error: a
// trigger of the app's skipped it with RAISE(IGNORE). Its record waits, as
// one the app refused does.
var errIgnored = errors.New("the app ignored the write")

// ignored returns errIgnored when a row of the records rids, which a
// write left as it was, does not show its record: a trigger's
// RAISE(IGNORE) skipped it. A row that shows the record's data already
// (an app that skips updates changing nothing) needs no write.
func (d *deserializer) ignored(ctx context.Context, t *tableInfo, cols []string, rids string) error {
	table := quote(t.Name)
	same := []string{"a.id = s.id"}
	for _, c := range cols {
		if c != "id" {
			same = append(same, fmt.Sprintf(`a.%s IS %s`, quote(c), recordValue(c, "a."+quote(c))))
		}
	}
	var unshown bool
	err := d.tx.QueryRowContext(ctx, fmt.Sprintf(`SELECT EXISTS (SELECT 1 FROM morango_store s WHERE s.rowid IN (%s)
		AND NOT EXISTS (SELECT 1 FROM %s a WHERE %s))`, rids, table, strings.Join(same, " AND "))).Scan(&unshown)
	if err == nil && unshown {
		err = errIgnored
	}
	return err
}

// upsert writes the store rows whose rowids the subquery rids lists into
// the app table: existing rows are updated, others inserted. It returns
// how many rows it wrote.
func (d *deserializer) upsert(ctx context.Context, t *tableInfo, cols []string, rids string) (int64, error) {
	table := quote(t.Name)
	if err := engineWrites(ctx, d.tx, d.apps, fmt.Sprintf(`SELECT s.id FROM morango_store s WHERE s.rowid IN (%s)`, rids)); err != nil {
		return 0, err
	}
	// An empty table (the first import of a device) has no rows to update,
	// and the rows inserted need not be looked for.
	var empty bool
	if err := d.tx.QueryRowContext(ctx, `SELECT NOT EXISTS (SELECT 1 FROM `+table+`)`).Scan(&empty); err != nil {
		return 0, err
	}
	var sets []string
	for _, c := range cols {
		if c == "id" {
			continue
		}
		sets = append(sets, fmt.Sprintf(`%s = %s`, quote(c), recordValue(c, table+"."+quote(c))))
	}
	var n int64
	switch {
	case empty:
	case len(sets) > 0:
		r, err := d.tx.ExecContext(ctx, fmt.Sprintf(`UPDATE %s SET %s FROM morango_store s WHERE s.id = %s.id AND s.rowid IN (%s)`,
			table, strings.Join(sets, ", "), table, rids))
		if err != nil {
			return 0, err
		}
		if n, err = r.RowsAffected(); err != nil {
			return 0, err
		}
	default:
		// Only the id syncs: a row in the app shows its record already.
		err := d.tx.QueryRowContext(ctx, fmt.Sprintf(`SELECT count(*) FROM morango_store s WHERE s.rowid IN (%s)
			AND EXISTS (SELECT 1 FROM %s a WHERE a.id = s.id)`, rids, table)).Scan(&n)
		if err != nil {
			return 0, err
		}
	}
	q := insertSQL(t, cols) + fmt.Sprintf(` FROM morango_store s WHERE s.rowid IN (%s)`, rids)
	if !empty {
		q += fmt.Sprintf(` AND NOT EXISTS (SELECT 1 FROM %s a WHERE a.id = s.id)`, table)
		// The rows the update wrote are the engine's no more.
		if err := engineWrites(ctx, d.tx, d.apps, fmt.Sprintf(`SELECT s.id FROM morango_store s WHERE s.rowid IN (%s)
			AND NOT EXISTS (SELECT 1 FROM %s a WHERE a.id = s.id)`, rids, table)); err != nil {
			return 0, err
		}
	}
	defer since(q, time.Now())
	r, err := d.tx.ExecContext(ctx, q)
	if err != nil {
		return 0, err
	}
	m, err := r.RowsAffected()
	return n + m, err
}

// noteWaiting notes in temp.morango_replaced, before the rows of the
// records rids are written or deleted, the app's changes of those rows
// that wait because they could not become versions (morango_dirty with an
// error: outside what this device may write, say): the row as it is (its
// synced columns as JSON, a BLOB as its SQL literal), or a deletion if it
// is gone. done logs to
// morango_conflictlog those whose change it drops, the rows the app took:
// they never reach another device, and would otherwise vanish. Only done
// when some change waits (deserializer.waiting); the rows are few.
func (d *deserializer) noteWaiting(ctx context.Context, table string, cols []string, rids string) error {
	if !d.waiting || len(cols) == 0 {
		return nil
	}
	return d.exec(ctx, fmt.Sprintf(`INSERT OR REPLACE INTO temp.morango_replaced (model, id, serialized, deleted)
		SELECT s.model_name, s.id, CASE WHEN a.id IS NULL THEN '' ELSE %s END, a.id IS NULL
		FROM morango_store s JOIN morango_dirty w ON w.model = s.model_name AND w.id = s.id AND %s
			LEFT JOIN %s a ON a.id = s.id
		WHERE s.rowid IN (%s)`, jsonLoggedSQL("a", cols), waitedSQL(d.apps, "w"), table, rids))
}

// recordValue is the value of column c in the record of the store row
// aliased s, or other if the record lacks the key (a JSON null gives
// NULL): json_extract is NULL for a missing key and for a null, so
// json_type is asked only then.
func recordValue(c, other string) string {
	if other == "NULL" {
		return fmt.Sprintf(`json_extract(s.serialized, %s)`, jsonPath(c))
	}
	return fmt.Sprintf(`coalesce(json_extract(s.serialized, %[1]s), CASE WHEN json_type(s.serialized, %[1]s) IS NULL THEN %[2]s END)`,
		jsonPath(c), other)
}

// insertSQL returns the start of a statement inserting the records of the
// store rows aliased s into the app table t, up to its FROM clause: the
// columns cols, each from the record, or its default where the record
// lacks the key.
func insertSQL(t *tableInfo, cols []string) string {
	var names, values []string
	for _, c := range cols {
		names = append(names, quote(c))
		def := "NULL"
		if ci := t.column(c); ci != nil && ci.Default.Valid {
			def = "(" + ci.Default.String + ")"
		}
		if c == "id" {
			values = append(values, "s.id")
			continue
		}
		values = append(values, recordValue(c, def))
	}
	return fmt.Sprintf(`INSERT INTO %s (%s) SELECT %s`, quote(t.Name), strings.Join(names, ", "), strings.Join(values, ", "))
}

// fkReadySQL returns the condition, on the store row aliased s, that every
// foreign-key target of the record exists in the app (or the key is null
// or absent), the column except aside; "" for a model without (other)
// foreign keys to synced models.
func (db *DB) fkReadySQL(m *profile.Model, except string) string {
	var fkReady []string
	for _, col := range slices.Sorted(maps.Keys(m.ForeignKeys)) {
		tm := db.profile.Model(m.ForeignKeys[col])
		if tm == nil || col == except {
			continue
		}
		// json_extract is NULL both for a missing key and for a JSON null.
		fkReady = append(fkReady, fmt.Sprintf(`(json_extract(s.serialized, %[1]s) IS NULL
			OR EXISTS (SELECT 1 FROM %[2]s f WHERE f.id = json_extract(s.serialized, %[1]s)))`, jsonPath(col), quote(tm.Table)))
	}
	return strings.Join(fkReady, " AND ")
}
