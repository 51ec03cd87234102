package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/morango-sync/morango/profile"
)

// migrations create and upgrade the sync tables. Entry i brings the schema
// from version i to i+1. Never edit a released entry: append a new one.
var migrations = []string{
	// 1: the initial sync tables.
	`
CREATE TABLE morango_schema (version INTEGER NOT NULL);
INSERT INTO morango_schema (version) VALUES (0);

CREATE TABLE morango_profile (
	name TEXT PRIMARY KEY,
	definition TEXT NOT NULL,
	installed_at TEXT NOT NULL
);

CREATE TABLE morango_databaseid (
	id TEXT PRIMARY KEY,
	current INTEGER NOT NULL,
	date_generated TEXT NOT NULL
);

CREATE TABLE morango_instanceid (
	id TEXT PRIMARY KEY,
	platform TEXT NOT NULL DEFAULT '',
	hostname TEXT NOT NULL DEFAULT '',
	sysversion TEXT NOT NULL DEFAULT '',
	node_id TEXT NOT NULL DEFAULT '',
	database_id TEXT NOT NULL,
	counter INTEGER NOT NULL DEFAULT 0,
	current INTEGER NOT NULL,
	db_path TEXT NOT NULL DEFAULT '',
	system_id TEXT NOT NULL DEFAULT ''
);

CREATE TABLE morango_store (
	id TEXT PRIMARY KEY,
	profile TEXT NOT NULL,
	serialized TEXT NOT NULL,
	deleted INTEGER NOT NULL DEFAULT 0,
	hard_deleted INTEGER NOT NULL DEFAULT 0,
	last_saved_instance TEXT NOT NULL,
	last_saved_counter INTEGER NOT NULL,
	partition TEXT NOT NULL,
	source_id TEXT NOT NULL DEFAULT '',
	model_name TEXT NOT NULL,
	conflicting_serialized_data TEXT NOT NULL DEFAULT '',
	_self_ref_fk TEXT NOT NULL DEFAULT '',
	dirty_bit INTEGER NOT NULL DEFAULT 0,
	deserialization_error TEXT NOT NULL DEFAULT '',
	last_transfer_session_id TEXT
);
CREATE INDEX morango_store_partition ON morango_store (partition, model_name);
CREATE INDEX morango_store_dirty ON morango_store (model_name) WHERE dirty_bit;
CREATE INDEX morango_store_transfer ON morango_store (last_transfer_session_id) WHERE last_transfer_session_id IS NOT NULL;

CREATE TABLE morango_recordmaxcounter (
	store_model_id TEXT NOT NULL,
	instance_id TEXT NOT NULL,
	counter INTEGER NOT NULL,
	PRIMARY KEY (store_model_id, instance_id)
) WITHOUT ROWID;
CREATE INDEX morango_recordmaxcounter_instance ON morango_recordmaxcounter (instance_id, counter);

CREATE TABLE morango_databasemaxcounter (
	instance_id TEXT NOT NULL,
	partition TEXT NOT NULL DEFAULT '',
	counter INTEGER NOT NULL,
	PRIMARY KEY (instance_id, partition)
) WITHOUT ROWID;

-- App rows inserted, updated or deleted since the last serialization,
-- written by the triggers. error holds why a row could not be serialized.
CREATE TABLE morango_dirty (
	model TEXT NOT NULL,
	id TEXT NOT NULL,
	error TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (model, id)
) WITHOUT ROWID;

CREATE TABLE morango_deletedmodels (
	id TEXT PRIMARY KEY,
	profile TEXT NOT NULL
);
CREATE TABLE morango_harddeletedmodels (
	id TEXT PRIMARY KEY,
	profile TEXT NOT NULL
);

-- Holds a row while the engine itself writes app rows, so that the triggers
-- do not mark those writes as local changes.
CREATE TABLE morango_applying (active INTEGER NOT NULL);

-- Versions displaced on this device: an app edit made while an incoming
-- version of the same record was not yet written to the app.
CREATE TABLE morango_conflictlog (
	seq INTEGER PRIMARY KEY AUTOINCREMENT,
	record_id TEXT NOT NULL,
	model_name TEXT NOT NULL,
	instance_id TEXT NOT NULL,
	counter INTEGER NOT NULL,
	serialized TEXT NOT NULL,
	deleted INTEGER NOT NULL,
	logged_at TEXT NOT NULL
);

CREATE TABLE morango_syncsession (
	id TEXT PRIMARY KEY,
	start_timestamp TEXT NOT NULL,
	last_activity_timestamp TEXT NOT NULL,
	active INTEGER NOT NULL,
	is_server INTEGER NOT NULL DEFAULT 0,
	client_certificate_id TEXT NOT NULL DEFAULT '',
	server_certificate_id TEXT NOT NULL DEFAULT '',
	profile TEXT NOT NULL,
	connection_kind TEXT NOT NULL,
	connection_path TEXT NOT NULL DEFAULT '',
	client_instance_id TEXT NOT NULL DEFAULT '',
	server_instance_id TEXT NOT NULL DEFAULT '',
	extra_fields TEXT NOT NULL DEFAULT '{}',
	process_id INTEGER
);

CREATE TABLE morango_transfersession (
	id TEXT PRIMARY KEY,
	sync_session_id TEXT NOT NULL,
	filter TEXT NOT NULL,
	push INTEGER NOT NULL,
	active INTEGER NOT NULL,
	records_transferred INTEGER NOT NULL DEFAULT 0,
	records_total INTEGER,
	bytes_sent INTEGER NOT NULL DEFAULT 0,
	bytes_received INTEGER NOT NULL DEFAULT 0,
	start_timestamp TEXT NOT NULL,
	last_activity_timestamp TEXT NOT NULL,
	client_fsic TEXT NOT NULL DEFAULT '{}',
	server_fsic TEXT NOT NULL DEFAULT '{}',
	transfer_stage TEXT,
	transfer_stage_status TEXT,
	bundle_path TEXT NOT NULL DEFAULT '',
	bundle_sha256 TEXT NOT NULL DEFAULT '',
	error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX morango_transfersession_bundle ON morango_transfersession (bundle_sha256);

CREATE TABLE morango_buffer (
	transfer_session_id TEXT NOT NULL,
	model_uuid TEXT NOT NULL,
	profile TEXT NOT NULL,
	serialized TEXT NOT NULL,
	deleted INTEGER NOT NULL,
	hard_deleted INTEGER NOT NULL,
	last_saved_instance TEXT NOT NULL,
	last_saved_counter INTEGER NOT NULL,
	partition TEXT NOT NULL,
	source_id TEXT NOT NULL,
	model_name TEXT NOT NULL,
	conflicting_serialized_data TEXT NOT NULL,
	_self_ref_fk TEXT NOT NULL,
	PRIMARY KEY (transfer_session_id, model_uuid)
) WITHOUT ROWID;
CREATE TABLE morango_recordmaxcounterbuffer (
	transfer_session_id TEXT NOT NULL,
	model_uuid TEXT NOT NULL,
	instance_id TEXT NOT NULL,
	counter INTEGER NOT NULL,
	PRIMARY KEY (transfer_session_id, model_uuid, instance_id)
) WITHOUT ROWID;

-- Bundles whose records are in the store: importing one again changes nothing.
CREATE TABLE morango_appliedbundle (
	transfer_id TEXT PRIMARY KEY,
	sha256 TEXT NOT NULL,
	sender_instance_id TEXT NOT NULL,
	records INTEGER NOT NULL,
	applied_at TEXT NOT NULL
);

CREATE TABLE morango_scopedefinition (
	id TEXT PRIMARY KEY,
	profile TEXT NOT NULL,
	version INTEGER NOT NULL,
	primary_scope_param_key TEXT NOT NULL,
	description TEXT NOT NULL,
	read_filter_template TEXT NOT NULL,
	write_filter_template TEXT NOT NULL,
	read_write_filter_template TEXT NOT NULL
);

CREATE TABLE morango_certificate (
	id TEXT PRIMARY KEY,
	parent_id TEXT,
	profile TEXT NOT NULL,
	scope_definition_id TEXT NOT NULL,
	scope_version INTEGER NOT NULL,
	scope_params TEXT NOT NULL,
	public_key TEXT NOT NULL,
	salt TEXT NOT NULL,
	serialized TEXT NOT NULL,
	signature TEXT NOT NULL,
	private_key TEXT,
	trusted INTEGER NOT NULL DEFAULT 0,
	added_at TEXT NOT NULL
);
CREATE INDEX morango_certificate_parent ON morango_certificate (parent_id);

-- Key pairs made by 'cert request', waiting for the granted certificate.
CREATE TABLE morango_certrequest (
	public_key TEXT PRIMARY KEY,
	scope_definition_id TEXT NOT NULL,
	scope_params TEXT NOT NULL,
	private_key TEXT NOT NULL,
	created_at TEXT NOT NULL
);
`,

	// 2: the deleted records of a model, for deserialization to find the
	// records whose foreign-key target is deleted without reading every
	// incoming record (partial: it costs nothing for live records).
	`
CREATE INDEX morango_store_deleted ON morango_store (model_name, id) WHERE deleted;
`,

	// 3: no query reads the records of a transfer session by its id, and
	// the index cost every imported record one more insert.
	`
DROP INDEX IF EXISTS morango_store_transfer;
`,

	// 4: a hard deletion erases the parent a self-referencing record names
	// with the rest of its data, as every device now stores it.
	`
UPDATE morango_store SET _self_ref_fk = '' WHERE hard_deleted AND _self_ref_fk <> '';
`,

	// 5: settings of this database kept from one command to the next (the
	// device's name for people).
	`
CREATE TABLE morango_setting (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
`,

	// 6: what the app showed of a record whose head waits to reach it (the
	// row's synced columns as JSON, NULL for no row), so that serializing
	// a touch of the row that changes none of them makes no version. A row
	// goes when the record's head reaches the app (its dirty bit clears).
	`
CREATE TABLE morango_shown (id TEXT PRIMARY KEY, serialized TEXT) WITHOUT ROWID;
CREATE TRIGGER morango_shown_written AFTER UPDATE OF dirty_bit ON morango_store
	WHEN OLD.dirty_bit AND NOT NEW.dirty_bit BEGIN DELETE FROM morango_shown WHERE id = OLD.id; END;
CREATE TRIGGER morango_shown_gone AFTER DELETE ON morango_store
	WHEN OLD.dirty_bit BEGIN DELETE FROM morango_shown WHERE id = OLD.id; END;
`,

	// 7: what the app shows of records that waited already when their
	// database took version 6 (see noteShown). Notes of records that no
	// longer wait go.
	`
DELETE FROM morango_shown WHERE id NOT IN (SELECT id FROM morango_store WHERE dirty_bit);
`,
}

// upgrades are the parts of a migration that SQL alone cannot do: entry i,
// when present, runs in the transaction of migrations[i], after its SQL.
var upgrades = map[int]func(context.Context, *sql.Tx) error{
	6: noteShown,
}

const currentSchemaVersion = 7

// noteShown notes what the app shows of each record whose head waits to
// reach it, as a deserialization that leaves a record waiting does: the
// app's row as it is, NULL for no row, unless the app changed the row
// since the last serialization. A database that took version 6 with
// records waiting has no note of them, and without one a touch of such a
// row that changes no synced column would make a version; and version 6
// never renewed a note, which outlived a row that left the app since.
func noteShown(ctx context.Context, tx *sql.Tx) error {
	var def string
	err := tx.QueryRowContext(ctx, `SELECT definition FROM morango_profile LIMIT 1`).Scan(&def)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read installed profile: %w", err)
	}
	p, err := profile.Parse([]byte(def))
	if err != nil {
		return fmt.Errorf("installed profile: %w", err)
	}
	schema, err := readSchema(ctx, tx)
	if err != nil {
		return err
	}
	for _, m := range p.Models {
		t := schema[m.Table]
		if t == nil {
			continue // Open says that the app's tables no longer match
		}
		cols := syncedColumns(t, m)
		if len(cols) == 0 {
			continue
		}
		_, err := tx.ExecContext(ctx, fmt.Sprintf(`INSERT INTO morango_shown (id, serialized)
			SELECT s.id, (SELECT %s FROM %s a WHERE a.id = s.id) FROM morango_store s
			WHERE s.dirty_bit AND s.model_name = ?1
				AND NOT EXISTS (SELECT 1 FROM morango_dirty w WHERE w.model = ?1 AND w.id = s.id)
			ON CONFLICT (id) DO UPDATE SET serialized = excluded.serialized`, jsonObjectSQL("a", cols), quote(m.Table)), m.Name)
		if err != nil {
			return err
		}
	}
	return nil
}

// syncTriggers are the sync tables' own triggers, as the migrations create
// them. An older morango's init drops every morango_ trigger
// before it finds the sync tables newer than it knows; opening the
// database creates those that are missing (restoreSyncTriggers).
var syncTriggers = []struct{ name, sql string }{
	{"morango_shown_written", `CREATE TRIGGER IF NOT EXISTS morango_shown_written AFTER UPDATE OF dirty_bit ON morango_store
	WHEN OLD.dirty_bit AND NOT NEW.dirty_bit BEGIN DELETE FROM morango_shown WHERE id = OLD.id; END`},
	{"morango_shown_gone", `CREATE TRIGGER IF NOT EXISTS morango_shown_gone AFTER DELETE ON morango_store
	WHEN OLD.dirty_bit BEGIN DELETE FROM morango_shown WHERE id = OLD.id; END`},
}

// restoreSyncTriggers creates the syncTriggers that are missing, and drops
// what morango_shown kept while they were: the notes of records whose head
// has reached the app since. It writes nothing when none is missing.
func restoreSyncTriggers(ctx context.Context, w *sql.DB) error {
	missing := false
	for _, tr := range syncTriggers {
		var n int
		err := w.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name = ?`, tr.name).Scan(&n)
		if err != nil {
			return fmt.Errorf("read sync tables' triggers: %w", err)
		}
		missing = missing || n == 0
	}
	if !missing {
		return nil
	}
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("restore sync tables' triggers: %w", err)
	}
	defer tx.Rollback()
	for _, tr := range syncTriggers {
		if _, err := tx.ExecContext(ctx, tr.sql); err != nil {
			return fmt.Errorf("restore trigger %s: %w", tr.name, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM morango_shown WHERE id NOT IN (SELECT id FROM morango_store WHERE dirty_bit)`); err != nil {
		return fmt.Errorf("restore sync tables' triggers: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("restore sync tables' triggers: %w", err)
	}
	return nil
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// schemaVersion returns the version of the sync tables, 0 if absent.
func schemaVersion(ctx context.Context, q execer) (int, error) {
	var n int
	err := q.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type='table' AND name='morango_schema'`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("read schema: %w", err)
	}
	if n == 0 {
		return 0, nil
	}
	var v int
	if err := q.QueryRowContext(ctx, `SELECT version FROM morango_schema`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

// migrate brings the sync tables to the current version, one transaction per
// step, so that an interrupted upgrade resumes where it stopped.
func migrate(ctx context.Context, w *sql.DB) error {
	for {
		tx, err := w.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		v, err := schemaVersion(ctx, tx)
		if err != nil {
			tx.Rollback()
			return err
		}
		if v > len(migrations) {
			tx.Rollback()
			return fmt.Errorf("migrate: sync tables are at version %d, this morango knows up to %d", v, len(migrations))
		}
		if v == len(migrations) {
			return tx.Rollback()
		}
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate sync tables to version %d: %w", v+1, err)
		}
		if up := upgrades[v]; up != nil {
			if err := up(ctx, tx); err != nil {
				tx.Rollback()
				return fmt.Errorf("migrate sync tables to version %d: %w", v+1, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE morango_schema SET version = ?`, v+1); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate sync tables to version %d: %w", v+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrate sync tables to version %d: %w", v+1, err)
		}
	}
}

type columnInfo struct {
	Name    string
	Type    string
	NotNull bool
	Default sql.NullString // an SQL expression
	PK      bool
}

type tableInfo struct {
	Name    string
	Columns []columnInfo
}

func (t *tableInfo) column(name string) *columnInfo {
	for i := range t.Columns {
		if t.Columns[i].Name == name {
			return &t.Columns[i]
		}
	}
	return nil
}

type schemaInfo map[string]*tableInfo

func (s schemaInfo) columns() map[string][]string {
	m := make(map[string][]string, len(s))
	for name, t := range s {
		cols := make([]string, len(t.Columns))
		for i, c := range t.Columns {
			cols[i] = c.Name
		}
		m[name] = cols
	}
	return m
}

// readSchema reads the app's tables and their columns (not the sync tables).
func readSchema(ctx context.Context, q execer) (schemaInfo, error) {
	rows, err := q.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\' AND name NOT LIKE 'morango\_%' ESCAPE '\'`)
	if err != nil {
		return nil, fmt.Errorf("read app schema: %w", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	s := make(schemaInfo, len(names))
	for _, n := range names {
		t := &tableInfo{Name: n}
		cr, err := q.QueryContext(ctx, `SELECT name, type, "notnull", dflt_value, pk FROM pragma_table_info(?)`, n)
		if err != nil {
			return nil, fmt.Errorf("read columns of %s: %w", n, err)
		}
		for cr.Next() {
			var c columnInfo
			var pk int
			if err := cr.Scan(&c.Name, &c.Type, &c.NotNull, &c.Default, &pk); err != nil {
				cr.Close()
				return nil, err
			}
			c.PK = pk > 0
			c.Type = strings.ToUpper(c.Type)
			t.Columns = append(t.Columns, c)
		}
		cr.Close()
		if err := cr.Err(); err != nil {
			return nil, err
		}
		s[n] = t
	}
	return s, nil
}
