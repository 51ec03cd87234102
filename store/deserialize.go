package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/morango-sync/morango/profile"
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

// deserialize writes dirty store rows into the app tables, parents before
// children. A row whose foreign-key target is missing stays dirty with the
// reason in deserialization_error; a row whose target is deleted is deleted
// too (the next serialization records that as a deletion). Columns the local
// table lacks are ignored; columns the record lacks keep their default (new
// rows) or their value (existing rows).
func (db *DB) deserialize(ctx context.Context, tx *sql.Tx) (DeserializeResult, error) {
	var res DeserializeResult
	d := deserializer{db: db, tx: tx}
	if err := d.exec(ctx,
		`INSERT INTO morango_applying (active) VALUES (1)`,
		`CREATE TEMP TABLE IF NOT EXISTS morango_ready (id TEXT PRIMARY KEY) WITHOUT ROWID`,
	); err != nil {
		return res, err
	}
	for _, m := range db.profile.Ordered() {
		if err := d.model(ctx, m, &res); err != nil {
			return res, fmt.Errorf("deserialize %s: %w", m.Name, err)
		}
	}
	if err := d.exec(ctx, `DELETE FROM morango_applying`, `DELETE FROM temp.morango_ready`); err != nil {
		return res, err
	}
	err := tx.QueryRowContext(ctx, `SELECT count(*) FROM morango_store WHERE dirty_bit AND profile = ?`, db.profile.Name).Scan(&res.Pending)
	return res, err
}

type deserializer struct {
	db *DB
	tx *sql.Tx
}

func (d *deserializer) exec(ctx context.Context, stmts ...string) error {
	for _, q := range stmts {
		if _, err := d.tx.ExecContext(ctx, q); err != nil {
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

func (d *deserializer) model(ctx context.Context, m *profile.Model, res *DeserializeResult) error {
	t := d.db.schema[m.Table]
	table, model := quote(m.Table), literal(m.Name)
	dirty := fmt.Sprintf(`s.model_name = %s AND s.profile = %s AND s.dirty_bit`, model, literal(d.db.profile.Name))

	// Deleted records leave the app.
	if err := d.exec(ctx,
		fmt.Sprintf(`DELETE FROM %s WHERE id IN (SELECT s.id FROM morango_store s WHERE %s AND s.deleted)`, table, dirty)); err != nil {
		return err
	}
	n, err := d.count(ctx, fmt.Sprintf(`UPDATE morango_store AS s SET dirty_bit = 0, deserialization_error = '' WHERE %s AND s.deleted`, dirty))
	if err != nil {
		return err
	}
	res.Deleted += n

	// Records whose foreign-key target is deleted in the store are deleted
	// too, here and (through the next serialization) everywhere.
	var fkDeleted []string
	for col, target := range m.ForeignKeys {
		fkDeleted = append(fkDeleted, fmt.Sprintf(`EXISTS (SELECT 1 FROM morango_store p WHERE p.id = json_extract(s.serialized, %s) AND p.model_name = %s AND p.deleted)`,
			jsonPath(col), literal(target)))
	}
	if len(fkDeleted) > 0 {
		cond := fmt.Sprintf(`%s AND NOT s.deleted AND (%s)`, dirty, strings.Join(fkDeleted, " OR "))
		if err := d.exec(ctx,
			fmt.Sprintf(`DELETE FROM %s WHERE id IN (SELECT s.id FROM morango_store s WHERE %s)`, table, cond),
			fmt.Sprintf(`INSERT INTO morango_dirty (model, id) SELECT %s, s.id FROM morango_store s WHERE %s ON CONFLICT DO NOTHING`, model, cond),
			fmt.Sprintf(`UPDATE morango_store AS s SET dirty_bit = 0, deserialization_error = '' WHERE %s`, cond),
		); err != nil {
			return err
		}
	}

	// Rows are written once every foreign-key target exists in the app;
	// a self-referencing model is written in waves, parents first.
	var fkReady []string
	for col, target := range m.ForeignKeys {
		tm := d.db.profile.Model(target)
		if tm == nil {
			continue
		}
		fkReady = append(fkReady, fmt.Sprintf(`(json_type(s.serialized, %[1]s) IS NULL OR json_type(s.serialized, %[1]s) = 'null'
			OR EXISTS (SELECT 1 FROM %[2]s f WHERE f.id = json_extract(s.serialized, %[1]s)))`, jsonPath(col), quote(tm.Table)))
	}
	ready := fmt.Sprintf(`SELECT s.id FROM morango_store s WHERE %s AND NOT s.deleted`, dirty)
	if len(fkReady) > 0 {
		ready += " AND " + strings.Join(fkReady, " AND ")
	}
	var cols []string
	for _, c := range t.Columns {
		if m.Synced(c.Name) {
			cols = append(cols, c.Name)
		}
	}
	for {
		if err := d.exec(ctx, `DELETE FROM temp.morango_ready`, `INSERT INTO temp.morango_ready (id) `+ready); err != nil {
			return err
		}
		n, err := d.write(ctx, t, cols)
		if err != nil {
			return err
		}
		res.Written += n
		if n == 0 || m.SelfRef() == "" {
			break
		}
	}

	// What is still dirty is pending: say why.
	var reasons []string
	for col, target := range m.ForeignKeys {
		tm := d.db.profile.Model(target)
		if tm == nil {
			continue
		}
		reasons = append(reasons, fmt.Sprintf(`WHEN json_type(s.serialized, %[1]s) NOT IN ('null') AND NOT EXISTS (SELECT 1 FROM %[2]s f WHERE f.id = json_extract(s.serialized, %[1]s))
			THEN %[3]s || json_extract(s.serialized, %[1]s) || %[4]s`, jsonPath(col), quote(tm.Table),
			literal(fmt.Sprintf("%s: %s ", col, target)), literal(" does not exist yet")))
	}
	if len(reasons) > 0 {
		err := d.exec(ctx, fmt.Sprintf(`UPDATE morango_store AS s SET deserialization_error = CASE %s ELSE deserialization_error END
			WHERE %s AND NOT s.deleted`, strings.Join(reasons, " "), dirty))
		if err != nil {
			return err
		}
	}
	return nil
}

// write upserts the rows listed in temp.morango_ready into the app table and
// clears their dirty bit. If the app's constraints refuse the batch, rows are
// written one by one and the refused ones stay dirty with the reason.
func (d *deserializer) write(ctx context.Context, t *tableInfo, cols []string) (int64, error) {
	if _, err := d.tx.ExecContext(ctx, `SAVEPOINT morango_write`); err != nil {
		return 0, err
	}
	n, err := d.upsert(ctx, t, cols, `SELECT id FROM temp.morango_ready`)
	if err == nil {
		_, err = d.tx.ExecContext(ctx, `RELEASE morango_write`)
		if err != nil {
			return 0, err
		}
		return n, d.exec(ctx, `UPDATE morango_store SET dirty_bit = 0, deserialization_error = '' WHERE id IN (SELECT id FROM temp.morango_ready)`)
	}
	if _, rerr := d.tx.ExecContext(ctx, `ROLLBACK TO morango_write`); rerr != nil {
		return 0, rerr
	}
	if _, rerr := d.tx.ExecContext(ctx, `RELEASE morango_write`); rerr != nil {
		return 0, rerr
	}
	d.db.log.Debug("batch refused, writing rows one by one", "table", t.Name, "err", err)
	rows, err := d.tx.QueryContext(ctx, `SELECT id FROM temp.morango_ready`)
	if err != nil {
		return 0, err
	}
	var idList []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		idList = append(idList, id)
	}
	rows.Close()
	var written int64
	for _, id := range idList {
		if _, err := d.tx.ExecContext(ctx, `SAVEPOINT morango_row`); err != nil {
			return 0, err
		}
		_, err := d.upsert(ctx, t, cols, literal(id))
		if err != nil {
			if _, rerr := d.tx.ExecContext(ctx, `ROLLBACK TO morango_row`); rerr != nil {
				return 0, rerr
			}
			_, err = d.tx.ExecContext(ctx, `UPDATE morango_store SET deserialization_error = ? WHERE id = ?`, "the app refused the row: "+err.Error(), id)
		} else {
			written++
			_, err = d.tx.ExecContext(ctx, `UPDATE morango_store SET dirty_bit = 0, deserialization_error = '' WHERE id = ?`, id)
		}
		if err != nil {
			return 0, err
		}
		if _, err := d.tx.ExecContext(ctx, `RELEASE morango_row`); err != nil {
			return 0, err
		}
	}
	return written, nil
}

// upsert writes the store rows whose ids the subquery ids selects into the
// app table: existing rows are updated, others inserted.
func (d *deserializer) upsert(ctx context.Context, t *tableInfo, cols []string, ids string) (int64, error) {
	table := quote(t.Name)
	value := func(c string) string {
		return fmt.Sprintf(`json_extract(s.serialized, %s)`, jsonPath(c))
	}
	present := func(c string) string {
		return fmt.Sprintf(`json_type(s.serialized, %s) IS NOT NULL`, jsonPath(c))
	}
	var sets []string
	for _, c := range cols {
		if c == "id" {
			continue
		}
		sets = append(sets, fmt.Sprintf(`%s = CASE WHEN %s THEN %s ELSE %s.%s END`, quote(c), present(c), value(c), table, quote(c)))
	}
	var n int64
	if len(sets) > 0 {
		r, err := d.tx.ExecContext(ctx, fmt.Sprintf(`UPDATE %s SET %s FROM morango_store s WHERE s.id = %s.id AND s.id IN (%s)`,
			table, strings.Join(sets, ", "), table, ids))
		if err != nil {
			return 0, err
		}
		if n, err = r.RowsAffected(); err != nil {
			return 0, err
		}
	}
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
		values = append(values, fmt.Sprintf(`CASE WHEN %s THEN %s ELSE %s END`, present(c), value(c), def))
	}
	r, err := d.tx.ExecContext(ctx, fmt.Sprintf(`INSERT INTO %s (%s) SELECT %s FROM morango_store s
		WHERE s.id IN (%s) AND NOT EXISTS (SELECT 1 FROM %s a WHERE a.id = s.id)`,
		table, strings.Join(names, ", "), strings.Join(values, ", "), ids, table))
	if err != nil {
		return 0, err
	}
	m, err := r.RowsAffected()
	return n + m, err
}
