package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/morango-sync/morango/profile"
)

// Init installs the sync tables, the profile and the change-tracking
// triggers in the app database at path, without changing the app's tables.
// Rows that exist already become syncable: they are serialized by the next
// serialization. Running Init again, with the same or an updated profile, is
// safe: it migrates the sync tables, replaces the profile and the triggers,
// and keeps every version and counter.
func Init(ctx context.Context, path string, p *profile.Profile, opts *Options) (*DB, error) {
	abs, err := absPath(path)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, withHint(fmt.Errorf("init %s: %w", path, err),
			"morango syncs an existing app database: create the app's tables first")
	}
	db, err := newDB(abs, opts)
	if err != nil {
		return nil, err
	}
	if err := db.install(ctx, p); err != nil {
		if notADatabase(err) {
			err = withHint(fmt.Errorf("init %s: %w", path, err), notADatabaseHint)
		}
		db.Close()
		return nil, err
	}
	if err := db.load(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func (db *DB) install(ctx context.Context, p *profile.Profile) error {
	// Sync tables of a newer morango are left as they are: their profile,
	// triggers and tables are that version's.
	v, err := schemaVersion(ctx, db.w)
	if err != nil {
		return err
	}
	if v > currentSchemaVersion {
		return newerSchema(db.path, v)
	}
	schema, err := readSchema(ctx, db.w)
	if err != nil {
		return err
	}
	if err := p.CheckSchema(schema.columns()); err != nil {
		return withHint(fmt.Errorf("profile %q does not match the database: %w", p.Name, err),
			"fix the profile (see docs/profile.md) or the app's tables")
	}
	for _, m := range p.Models {
		if err := checkColumnTypes(schema[m.Table], m); err != nil {
			return err
		}
	}
	if err := migrate(ctx, db.w); err != nil {
		return err
	}
	def, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode profile: %w", err)
	}
	return db.writeTx(ctx, func(tx *sql.Tx) error {
		var installed string
		err := tx.QueryRowContext(ctx, `SELECT name FROM morango_profile LIMIT 1`).Scan(&installed)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("read installed profile: %w", err)
		}
		if installed != "" && installed != p.Name {
			return withHint(fmt.Errorf("database already syncs profile %q, not %q", installed, p.Name),
				"a database syncs one profile; use the profile it was initialized with")
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM morango_profile`); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO morango_profile (name, definition, installed_at) VALUES (?, ?, ?)`, p.Name, string(def), now()); err != nil {
			return fmt.Errorf("save profile: %w", err)
		}
		for _, sd := range p.ScopeDefinitions {
			_, err := tx.ExecContext(ctx, `INSERT INTO morango_scopedefinition (id, profile, version, primary_scope_param_key, description,
				read_filter_template, write_filter_template, read_write_filter_template) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (id) DO UPDATE SET profile = excluded.profile, version = excluded.version,
				primary_scope_param_key = excluded.primary_scope_param_key, description = excluded.description,
				read_filter_template = excluded.read_filter_template, write_filter_template = excluded.write_filter_template,
				read_write_filter_template = excluded.read_write_filter_template`,
				sd.ID, sd.Profile, sd.Version, sd.PrimaryScopeParamKey, sd.Description,
				sd.ReadFilterTemplate, sd.WriteFilterTemplate, sd.ReadWriteFilterTemplate)
			if err != nil {
				return fmt.Errorf("save scope definition %s: %w", sd.ID, err)
			}
		}
		if err := dropTriggers(ctx, tx); err != nil {
			return err
		}
		for _, m := range p.Models {
			for _, stmt := range triggerSQL(m) {
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("install triggers on %s: %w", m.Table, err)
				}
			}
			// Every existing row is a candidate for serialization; rows
			// whose content the store already holds produce no new version.
			_, err := tx.ExecContext(ctx, fmt.Sprintf(`INSERT INTO morango_dirty (model, id) SELECT %s, id FROM %s WHERE true
				ON CONFLICT (model, id) DO UPDATE SET error = ''`, literal(m.Name), quote(m.Table)))
			if err != nil {
				return fmt.Errorf("mark existing rows of %s: %w", m.Table, err)
			}
		}
		return nil
	})
}

// checkColumnTypes refuses column types whose values JSON cannot hold.
func checkColumnTypes(t *tableInfo, m *profile.Model) error {
	for _, c := range t.Columns {
		if c.Type == "BLOB" && m.Synced(c.Name) {
			return withHint(fmt.Errorf("table %s: column %s is a BLOB, which morango cannot sync", t.Name, c.Name),
				"store the value as text (e.g. base64) or list the column under \"exclude\" in the profile")
		}
	}
	return nil
}

func dropTriggers(ctx context.Context, tx *sql.Tx) error {
	// Those on the app's tables; the sync tables' own (schema.go) stay.
	rows, err := tx.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'morango\_%' ESCAPE '\'
		AND tbl_name NOT LIKE 'morango\_%' ESCAPE '\'`)
	if err != nil {
		return fmt.Errorf("list triggers: %w", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		names = append(names, n)
	}
	rows.Close()
	for _, n := range names {
		if _, err := tx.ExecContext(ctx, `DROP TRIGGER `+quote(n)); err != nil {
			return fmt.Errorf("drop trigger %s: %w", n, err)
		}
	}
	return nil
}

// trackingOps are the writes the change-tracking triggers follow, and
// trackingTrigger the name of the one init installs on table for op.
var trackingOps = []string{"insert", "update", "delete"}

func trackingTrigger(table, op string) string { return "morango_" + table + "_" + op }

// triggerSQL returns the statements that install change tracking on a
// model's table. Inserts, updates and deletes enqueue the row in
// morango_dirty unless the engine itself is writing (morango_applying holds
// a row then); serialization decides what changed.
func triggerSQL(m *profile.Model) []string {
	t, model := quote(m.Table), literal(m.Name)
	guard := `WHEN NOT EXISTS (SELECT 1 FROM morango_applying)`
	mark := func(ref string) string {
		return fmt.Sprintf(`INSERT INTO morango_dirty (model, id) VALUES (%s, %s.id) ON CONFLICT (model, id) DO UPDATE SET error = '';`, model, ref)
	}
	name := func(op string) string { return quote(trackingTrigger(m.Table, op)) }
	return []string{
		fmt.Sprintf(`CREATE TRIGGER %s AFTER INSERT ON %s %s BEGIN %s END`, name("insert"), t, guard, mark("NEW")),
		fmt.Sprintf(`CREATE TRIGGER %s AFTER UPDATE ON %s %s BEGIN %s %s END`, name("update"), t, guard, mark("NEW"),
			// A changed primary key deletes the old record.
			fmt.Sprintf(`INSERT INTO morango_dirty (model, id) SELECT %s, OLD.id WHERE OLD.id IS NOT NEW.id ON CONFLICT (model, id) DO UPDATE SET error = '';`, model)),
		fmt.Sprintf(`CREATE TRIGGER %s AFTER DELETE ON %s %s BEGIN %s END`, name("delete"), t, guard, mark("OLD")),
	}
}
