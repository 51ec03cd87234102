package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// ModelStatus counts one model's records.
type ModelStatus struct {
	Model string `json:"model"`
	Table string `json:"table"`
	// AppRows is the number of rows in the app's table.
	AppRows int64 `json:"app_rows"`
	// Records is the number of store records, Deleted of which are deleted
	// (HardDeleted of those erased).
	Records     int64 `json:"records"`
	Deleted     int64 `json:"deleted"`
	HardDeleted int64 `json:"hard_deleted"`
	// Conflicts counts records holding concurrent versions that lost.
	Conflicts int64 `json:"conflicts"`
	// Unserialized counts app rows changed since the last serialization.
	Unserialized int64 `json:"unserialized"`
	// Pending counts store records not yet written to the app.
	Pending int64 `json:"pending"`
}

// Problem is a row that could not be serialized or deserialized.
type Problem struct {
	Model  string `json:"model"`
	ID     string `json:"id"`
	Stage  string `json:"stage"` // "serialize" or "deserialize"
	Reason string `json:"reason"`
}

// Counter is one database-max counter.
type Counter struct {
	Instance  string `json:"instance"`
	Partition string `json:"partition"`
	Counter   int64  `json:"counter"`
}

// Status describes the sync state of a database.
type Status struct {
	Path     string        `json:"path"`
	Profile  string        `json:"profile"`
	Instance Instance      `json:"instance"`
	Models   []ModelStatus `json:"models"`
	Counters []Counter     `json:"counters"`
	Problems []Problem     `json:"problems"`
}

// maxProblems bounds the problems Status lists.
const maxProblems = 100

// Status reads the database's sync state. It changes nothing.
func (db *DB) Status(ctx context.Context) (*Status, error) {
	in, err := db.Instance(ctx)
	if err != nil {
		return nil, err
	}
	st := &Status{Path: db.path, Profile: db.profile.Name, Instance: *in}
	// Read before the transaction below takes a connection of the pool:
	// with every connection held by a Status waiting for another, none
	// would return.
	_, _, broken, err := db.heldScopes(ctx)
	if err != nil {
		return nil, err
	}
	tx, err := db.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	for _, m := range db.profile.Ordered() {
		ms := ModelStatus{Model: m.Name, Table: m.Table}
		err := tx.QueryRowContext(ctx, fmt.Sprintf(`SELECT count(*) FROM %s`, quote(m.Table))).Scan(&ms.AppRows)
		if err == nil {
			err = tx.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(deleted), 0), coalesce(sum(hard_deleted), 0),
				coalesce(sum(conflicting_serialized_data LIKE '%"hard_deleted":false%'), 0), coalesce(sum(dirty_bit), 0)
				FROM morango_store WHERE model_name = ?`, m.Name).Scan(&ms.Records, &ms.Deleted, &ms.HardDeleted, &ms.Conflicts, &ms.Pending)
		}
		if err == nil {
			err = tx.QueryRowContext(ctx, `SELECT count(*) FROM morango_dirty WHERE model = ?`, m.Name).Scan(&ms.Unserialized)
		}
		if err != nil {
			return nil, fmt.Errorf("status of %s: %w", m.Name, err)
		}
		st.Models = append(st.Models, ms)
	}
	rows, err := tx.QueryContext(ctx, `SELECT instance_id, partition, counter FROM morango_databasemaxcounter ORDER BY instance_id, partition`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var c Counter
		if err := rows.Scan(&c.Instance, &c.Partition, &c.Counter); err != nil {
			rows.Close()
			return nil, err
		}
		st.Counters = append(st.Counters, c)
	}
	rows.Close()
	// A certificate of this device whose chain stopped verifying (a
	// profile whose scope definitions changed) grants nothing: every
	// change under it waits, and the reason is here.
	for _, id := range slices.Sorted(maps.Keys(broken)) {
		why := broken[id]
		st.Problems = append(st.Problems, Problem{Stage: "certificate", ID: id,
			Reason: fmt.Sprintf("this device's certificate does not verify with the installed profile (%v): it grants nothing, and the changes it covered wait; import its chain again, or install the profile it was made with", why)})
	}
	rows, err = tx.QueryContext(ctx, `SELECT model, id, 'serialize', error FROM morango_dirty WHERE error <> ''
		UNION ALL SELECT model_name, id, 'deserialize', deserialization_error FROM morango_store WHERE dirty_bit AND deserialization_error <> ''
		ORDER BY 1, 2 LIMIT ?`, maxProblems)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var p Problem
		if err := rows.Scan(&p.Model, &p.ID, &p.Stage, &p.Reason); err != nil {
			return nil, err
		}
		st.Problems = append(st.Problems, p)
	}
	return st, rows.Err()
}

// HardDelete deletes an app row and erases its data everywhere it syncs: its
// store record keeps only a hard-deleted version, which replaces every other
// version on the devices it reaches. Apps do the same with plain SQL by
// inserting the id into morango_harddeletedmodels (id, profile) before
// deleting the row.
func (db *DB) HardDelete(ctx context.Context, model, id string) error {
	m := db.profile.Model(model)
	if m == nil {
		return withHint(fmt.Errorf("hard delete: no model %q in profile %s", model, db.profile.Name),
			"name a model of the profile (see morango status)")
	}
	return db.writeTx(ctx, func(tx *sql.Tx) error {
		var inApp, inStore bool
		if err := tx.QueryRowContext(ctx, fmt.Sprintf(`SELECT EXISTS (SELECT 1 FROM %s WHERE id = ?)`, quote(m.Table)), id).Scan(&inApp); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM morango_store WHERE id = ? AND model_name = ?)`, id, model).Scan(&inStore); err != nil {
			return err
		}
		if !inApp && !inStore {
			return withHint(fmt.Errorf("hard delete: no %s with id %s", model, id),
				"give the id of a row of table %s (the id column), under the model that syncs it", m.Table)
		}
		if !inStore {
			// A row not yet serialized becomes a record first, so that its
			// erasure is recorded and reaches the devices that hold the
			// same record (a model with a source-id template gives the
			// same id to the same row made on two devices).
			if _, err := db.serialize(ctx, tx); err != nil {
				return err
			}
		}
		if err := db.mayWrite(ctx, tx, id, "hard delete", "the erasure"); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO morango_harddeletedmodels (id, profile) VALUES (?, ?) ON CONFLICT DO NOTHING`, id, db.profile.Name); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(`DELETE FROM %s WHERE id = ?`, quote(m.Table)), id); err != nil {
			return err
		}
		_, err := db.serialize(ctx, tx)
		return err
	})
}

// mayWriteData refuses a version of a record in partition that this
// device would make with data serialized, once it holds a certificate's
// key, when no certificate of its own may write both partition and the
// partition the data gives (the model's template over its fields, read as
// SQLite reads them): a bundle is signed by one certificate, and importers
// check both against its write scope, so the version could never leave
// the device. action names the action.
func (db *DB) mayWriteData(ctx context.Context, tx *sql.Tx, model, id, partition, serialized, action string) error {
	m := db.profile.Model(model)
	if m == nil {
		return nil
	}
	each, held, err := db.writeScopes(ctx)
	if err != nil || !held {
		return err
	}
	get := func(col string) (string, bool) {
		var v sql.NullString
		if err := tx.QueryRowContext(ctx, `SELECT json_extract(?, ?)`, serialized, jsonPathText(col)).Scan(&v); err != nil || !v.Valid {
			return "", false
		}
		return v.String, true
	}
	data, err := m.PartitionOf(id, get)
	if err != nil {
		return withHint(fmt.Errorf("%s: the version's data gives no partition (%v), so it could never leave this device", action, err),
			"make the change anew in the app")
	}
	for _, w := range each {
		if w.Contains(partition) && w.Contains(data) {
			return nil
		}
	}
	return withHint(fmt.Errorf("%s: no certificate of this device may write both the record's partition %s and partition %s, where the version's data puts it, so the version could never leave it", action, partition, data),
		"%s it on a device whose certificate may write both, or make the change anew in the app", action)
}

// mayWrite refuses an action on a record this device may not write, once
// it holds a certificate's key: what the action makes (the erasure, the
// decision) could never leave it. A row that never became a record (it
// waits with a reason) may go. action names the action, what it makes.
func (db *DB) mayWrite(ctx context.Context, tx *sql.Tx, id, action, what string) error {
	w, held, err := db.writeScope(ctx)
	if err != nil || !held {
		return err
	}
	var partition string
	err = tx.QueryRowContext(ctx, `SELECT partition FROM morango_store WHERE id = ?`, id).Scan(&partition)
	if errors.Is(err, sql.ErrNoRows) {
		return nil // never a record: deleting the row erases it everywhere it is
	}
	if err != nil {
		return err
	}
	if !w.Contains(partition) {
		return withHint(fmt.Errorf("%s: this device may not write partition %s, so %s could never leave it", action, partition, what),
			"%s it on a device whose certificate may write partition %s", action, partition)
	}
	return nil
}
