package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
)

// The change-tracking triggers are off while the engine writes app rows
// (morango_applying holds a row), so that its writes are not taken for the
// app's. But the app's own triggers may write other rows of synced tables
// at that moment: a welcome note for each new person, the notes of a person
// the engine deletes. Those rows are the app's changes, made on this
// device, and must be synced like any other.
//
// When the app has triggers of its own on synced tables, an engine write
// of app rows runs with appWrites: temporary triggers, on the engine's
// connection only, list in morango_dirty every row written while the
// engine writes except those the engine's statement itself writes, which
// it names first in temp.morango_writing (engineWrites). A row the
// engine's statement writes and an app trigger changes meanwhile (a time
// stamp on the row itself) is the engine's: syncing such a change would
// make a new version at each device that receives the row, for ever. A
// row the engine wrote in an earlier statement is the app's to change.

// appWrites creates the temporary triggers if the app has triggers of its
// own on the synced tables, and returns whether it did. Names of tables
// are compared as SQLite does, without case: a trigger's tbl_name is the
// name as its CREATE TRIGGER spelled it. endAppWrites drops them; both
// run in the transaction of the engine's writes, so that a rollback drops
// them too.
func (db *DB) appWrites(ctx context.Context, tx *sql.Tx) (bool, error) {
	// The change-tracking triggers that init installs are the engine's;
	// any other trigger, whatever its name, is the app's.
	var own bool
	var tables, ours []string
	for _, m := range db.profile.Models {
		tables = append(tables, m.Table)
		for _, op := range trackingOps {
			ours = append(ours, trackingTrigger(m.Table, op))
		}
	}
	tj, err := json.Marshal(tables)
	if err != nil {
		return false, err
	}
	oj, err := json.Marshal(ours)
	if err != nil {
		return false, err
	}
	err = tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM main.sqlite_master WHERE type = 'trigger'
		AND tbl_name COLLATE NOCASE IN (SELECT value FROM json_each(?1)) AND name NOT IN (SELECT value FROM json_each(?2)))`,
		string(tj), string(oj)).Scan(&own)
	if err != nil || !own {
		return false, err
	}
	stmts := []string{
		`CREATE TEMP TABLE IF NOT EXISTS morango_writing (id TEXT PRIMARY KEY) WITHOUT ROWID`,
		`DELETE FROM temp.morango_writing`,
		`CREATE TEMP TABLE IF NOT EXISTS morango_waited (model TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (model, id)) WITHOUT ROWID`,
		`DELETE FROM temp.morango_waited`,
	}
	for _, m := range db.profile.Models {
		t, model := quote(m.Table), literal(m.Name)
		guard := func(ref string) string {
			return fmt.Sprintf(`WHEN EXISTS (SELECT 1 FROM main.morango_applying) AND %s.id NOT IN (SELECT id FROM temp.morango_writing)`, ref)
		}
		// A change of the row that waited (morango_dirty with an error)
		// is noted as waiting all the same (temp.morango_waited): the
		// engine may write the row's record next, and the change it
		// replaces is logged (deserializer.done).
		mark := func(ref string) string {
			return fmt.Sprintf(`INSERT INTO temp.morango_waited (model, id) SELECT model, id FROM main.morango_dirty
				WHERE model = %[1]s AND id = %[2]s.id AND error <> '' ON CONFLICT DO NOTHING;
				INSERT INTO main.morango_dirty (model, id) VALUES (%[1]s, %[2]s.id) ON CONFLICT (model, id) DO UPDATE SET error = '';`, model, ref)
		}
		name := func(op string) string { return quote(appTrigger(m.Table, op)) }
		stmts = append(stmts,
			fmt.Sprintf(`CREATE TEMP TRIGGER IF NOT EXISTS %s AFTER INSERT ON main.%s %s BEGIN %s END`, name("insert"), t, guard("NEW"), mark("NEW")),
			fmt.Sprintf(`CREATE TEMP TRIGGER IF NOT EXISTS %s AFTER UPDATE ON main.%s %s BEGIN %s %s END`, name("update"), t, guard("NEW"), mark("NEW"),
				fmt.Sprintf(`INSERT INTO main.morango_dirty (model, id) SELECT %s, OLD.id WHERE OLD.id IS NOT NEW.id ON CONFLICT (model, id) DO UPDATE SET error = '';`, model)),
			fmt.Sprintf(`CREATE TEMP TRIGGER IF NOT EXISTS %s AFTER DELETE ON main.%s %s BEGIN %s END`, name("delete"), t, guard("OLD"), mark("OLD")),
		)
	}
	for _, q := range stmts {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return false, fmt.Errorf("track the app's own writes: %w", err)
		}
	}
	return true, nil
}

// appTrigger is the name of the temporary trigger appWrites makes on table
// for op.
func appTrigger(table, op string) string { return "morango_app_" + table + "_" + op }

// endAppWrites drops what appWrites made.
func (db *DB) endAppWrites(ctx context.Context, tx *sql.Tx) error {
	for _, m := range db.profile.Models {
		for _, op := range trackingOps {
			if _, err := tx.ExecContext(ctx, `DROP TRIGGER IF EXISTS temp.`+quote(appTrigger(m.Table, op))); err != nil {
				return fmt.Errorf("stop tracking the app's own writes: %w", err)
			}
		}
	}
	_, err := tx.ExecContext(ctx, `DELETE FROM temp.morango_writing`)
	if err == nil {
		_, err = tx.ExecContext(ctx, `DELETE FROM temp.morango_waited`)
	}
	return err
}

// waitedSQL is the condition that the morango_dirty entry aliased w is an
// app change that waits: it has an error, or had one when an app trigger
// changed its row during this deserialization (appWrites).
func waitedSQL(apps bool, w string) string {
	if !apps {
		return w + `.error <> ''`
	}
	return fmt.Sprintf(`(%[1]s.error <> '' OR EXISTS (SELECT 1 FROM temp.morango_waited x WHERE x.model = %[1]s.model AND x.id = %[1]s.id))`, w)
}

// engineWrites names in temp.morango_writing the rows that the engine's
// next statement writes, whose ids the query ids selects, when appWrites
// is on. The names of earlier statements go: a row the engine wrote before
// and an app trigger changes as the engine writes another (a person
// marked as a writer when her note comes) is the app's change, as it
// would be had the engine not written the row in the same
// deserialization.
func engineWrites(ctx context.Context, tx *sql.Tx, on bool, ids string) error {
	if !on {
		return nil
	}
	_, err := tx.ExecContext(ctx, `DELETE FROM temp.morango_writing`)
	if err == nil {
		_, err = tx.ExecContext(ctx, `INSERT INTO temp.morango_writing (id) SELECT id FROM (`+ids+`) WHERE true ON CONFLICT DO NOTHING`)
	}
	return err
}
