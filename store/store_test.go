package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/morango-sync/morango/ids"
	"github.com/morango-sync/morango/profile"
)

const testSchema = `
CREATE TABLE dataset (id TEXT PRIMARY KEY, name TEXT);
CREATE TABLE person (id TEXT PRIMARY KEY, dataset_id TEXT NOT NULL, name TEXT NOT NULL,
	nickname TEXT DEFAULT 'none', local_pref TEXT);
CREATE TABLE note (id TEXT PRIMARY KEY, dataset_id TEXT, person_id TEXT, parent_id TEXT, body TEXT);
CREATE TABLE summary (id TEXT PRIMARY KEY, dataset_id TEXT, person_id TEXT, content_id TEXT, progress REAL);
`

const testProfile = `{
  "profile": "testdata",
  "models": [
    {"name": "dataset", "table": "dataset", "partition": "${id}"},
    {"name": "person", "table": "person", "partition": "${dataset_id}:user-ro:${id}",
     "foreign_keys": {"dataset_id": "dataset"}, "exclude": ["local_pref"]},
    {"name": "note", "table": "note", "partition": "${dataset_id}:user-rw:${person_id}",
     "foreign_keys": {"person_id": "person", "parent_id": "note"}},
    {"name": "summary", "table": "summary", "partition": "${dataset_id}:user-rw:${person_id}",
     "source_id": "${person_id}:${content_id}", "foreign_keys": {"person_id": "person"}}
  ],
  "scope_definitions": []
}`

// device is one test database: the app's own connection and the engine.
type device struct {
	t    *testing.T
	path string
	app  *sql.DB
	db   *DB
}

func newDevice(t *testing.T, name string) *device {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".sqlite3")
	app, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	if _, err := app.Exec(testSchema); err != nil {
		t.Fatal(err)
	}
	return &device{t: t, path: path, app: app}
}

func (d *device) init(ctx context.Context) {
	d.t.Helper()
	d.initWith(ctx, testProfile)
}

// initWith installs sync with the profile def.
func (d *device) initWith(ctx context.Context, def string) {
	d.t.Helper()
	p, err := profile.Parse([]byte(def))
	if err != nil {
		d.t.Fatal(err)
	}
	d.db, err = Init(ctx, d.path, p, &Options{SystemID: "sys-" + filepath.Base(d.path), NodeID: "node"})
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { d.db.Close() })
}

func (d *device) exec(q string, args ...any) {
	d.t.Helper()
	if _, err := d.app.Exec(q, args...); err != nil {
		d.t.Fatalf("%s: %v", q, err)
	}
}

func (d *device) serialize(ctx context.Context) SerializeResult {
	d.t.Helper()
	r, err := d.db.Serialize(ctx)
	if err != nil {
		d.t.Fatal(err)
	}
	return r
}

type storeRow struct {
	Serialized, Partition, SourceID, Model, LSI string
	LSC                                         int64
	Deleted, HardDeleted, Dirty                 bool
	Conflicting, Error                          string
}

func (d *device) storeRow(id string) *storeRow {
	d.t.Helper()
	var r storeRow
	err := d.app.QueryRow(`SELECT serialized, partition, source_id, model_name, last_saved_instance, last_saved_counter,
		deleted, hard_deleted, dirty_bit, conflicting_serialized_data, deserialization_error FROM morango_store WHERE id = ?`, id).Scan(
		&r.Serialized, &r.Partition, &r.SourceID, &r.Model, &r.LSI, &r.LSC, &r.Deleted, &r.HardDeleted, &r.Dirty, &r.Conflicting, &r.Error)
	if err == sql.ErrNoRows {
		return nil
	}
	if err != nil {
		d.t.Fatal(err)
	}
	return &r
}

func (d *device) history(id string) map[string]int64 {
	d.t.Helper()
	rows, err := d.app.Query(`SELECT instance_id, counter FROM morango_recordmaxcounter WHERE store_model_id = ?`, id)
	if err != nil {
		d.t.Fatal(err)
	}
	defer rows.Close()
	m := map[string]int64{}
	for rows.Next() {
		var i string
		var c int64
		if err := rows.Scan(&i, &c); err != nil {
			d.t.Fatal(err)
		}
		m[i] = c
	}
	return m
}

func (d *device) count(q string, args ...any) int {
	d.t.Helper()
	var n int
	if err := d.app.QueryRow(q, args...).Scan(&n); err != nil {
		d.t.Fatalf("%s: %v", q, err)
	}
	return n
}

var (
	dsID     = strings.Repeat("d", 32)
	aliceID  = strings.Repeat("a", 32)
	bobID    = strings.Repeat("b", 32)
	note1ID  = strings.Repeat("1", 32)
	note2ID  = strings.Repeat("2", 32)
	contentC = strings.Repeat("c", 32)
)

func TestSerializeAppWrites(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "a")
	// A row written before init becomes syncable too.
	d.exec(`INSERT INTO dataset (id, name) VALUES (?, 'School')`, dsID)
	d.init(ctx)
	me := d.db.instance.ID

	// The app writes through its own connection.
	d.exec(`INSERT INTO person (id, dataset_id, name, local_pref) VALUES (?, ?, 'Alice', 'dark')`, aliceID, dsID)
	d.exec(`INSERT INTO note (id, dataset_id, person_id, body) VALUES (?, ?, ?, 'hello')`, note1ID, dsID, aliceID)
	r := d.serialize(ctx)
	if r.Created != 3 || r.Counter != 1 {
		t.Fatalf("first serialization: %+v", r)
	}
	ds := d.storeRow(dsID)
	if ds == nil || ds.Partition != dsID || ds.Model != "dataset" || ds.LSI != me || ds.LSC != 1 {
		t.Fatalf("dataset record: %+v", ds)
	}
	alice := d.storeRow(aliceID)
	if alice.Partition != dsID+":user-ro:"+aliceID {
		t.Errorf("person partition %q", alice.Partition)
	}
	var fields map[string]any
	if err := json.Unmarshal([]byte(alice.Serialized), &fields); err != nil {
		t.Fatal(err)
	}
	if fields["name"] != "Alice" || fields["nickname"] != "none" || fields["id"] != aliceID {
		t.Errorf("serialized person: %s", alice.Serialized)
	}
	if _, ok := fields["local_pref"]; ok {
		t.Errorf("excluded column serialized: %s", alice.Serialized)
	}
	if n := d.storeRow(note1ID); n.Partition != dsID+":user-rw:"+aliceID {
		t.Errorf("note partition %q", n.Partition)
	}
	if h := d.history(aliceID); len(h) != 1 || h[me] != 1 {
		t.Errorf("history %v", h)
	}
	if n := d.count(`SELECT counter FROM morango_databasemaxcounter WHERE instance_id = ? AND partition = ''`, me); n != 1 {
		t.Errorf("database-max counter %d", n)
	}

	// An update is a new version; an update of an excluded column or a
	// no-op update is not.
	d.exec(`UPDATE person SET name = 'Alicia' WHERE id = ?`, aliceID)
	d.exec(`UPDATE note SET body = body WHERE id = ?`, note1ID)
	d.exec(`UPDATE person SET local_pref = 'light' WHERE id = ?`, aliceID)
	r = d.serialize(ctx)
	if r.Updated != 1 || r.Created != 0 || r.Counter != 2 {
		t.Fatalf("second serialization: %+v", r)
	}
	if a := d.storeRow(aliceID); a.LSC != 2 || !strings.Contains(a.Serialized, "Alicia") {
		t.Errorf("updated person: %+v", a)
	}
	if n := d.storeRow(note1ID); n.LSC != 1 {
		t.Errorf("unchanged note got a new version: %+v", n)
	}
	if h := d.history(aliceID); h[me] != 2 {
		t.Errorf("history after update %v", h)
	}

	// Nothing dirty: no counter is used.
	if r := d.serialize(ctx); r.Counter != 0 || r.Versions() != 0 {
		t.Errorf("idle serialization: %+v", r)
	}

	// A delete is a deleted version that keeps the data; a hard delete
	// erases it.
	d.exec(`DELETE FROM note WHERE id = ?`, note1ID)
	r = d.serialize(ctx)
	if n := d.storeRow(note1ID); r.Deleted != 1 || !n.Deleted || n.HardDeleted || !strings.Contains(n.Serialized, "hello") {
		t.Errorf("soft delete: %+v %+v", r, n)
	}
	if err := d.db.HardDelete(ctx, "person", aliceID); err != nil {
		t.Fatal(err)
	}
	if a := d.storeRow(aliceID); !a.HardDeleted || !a.Deleted || a.Serialized != "{}" {
		t.Errorf("hard delete: %+v", a)
	}
	if n := d.count(`SELECT count(*) FROM person`); n != 0 {
		t.Errorf("hard-deleted app row still there")
	}

	// Re-creating a deleted record clears the flags.
	d.exec(`INSERT INTO note (id, dataset_id, person_id, body) VALUES (?, ?, ?, 'again')`, note1ID, dsID, aliceID)
	d.serialize(ctx)
	if n := d.storeRow(note1ID); n.Deleted || !strings.Contains(n.Serialized, "again") {
		t.Errorf("re-created note: %+v", n)
	}
}

func TestInitTwiceIsSafe(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "a")
	d.init(ctx)
	d.exec(`INSERT INTO dataset (id, name) VALUES (?, 'School')`, dsID)
	d.serialize(ctx)
	before := d.storeRow(dsID)
	d.db.Close()
	d.init(ctx)
	if r := d.serialize(ctx); r.Versions() != 0 {
		t.Errorf("re-init made new versions: %+v", r)
	}
	if after := d.storeRow(dsID); *after != *before {
		t.Errorf("record changed by re-init: %+v -> %+v", before, after)
	}
	// Three per synced app table, and the sync tables' own two.
	if n := d.count(`SELECT count(*) FROM sqlite_master WHERE type = 'trigger'`); n != 14 {
		t.Errorf("%d triggers, want 14", n)
	}
}

func TestSourceIDModel(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "a")
	d.init(ctx)
	d.exec(`INSERT INTO dataset (id, name) VALUES (?, 'School')`, dsID)
	d.exec(`INSERT INTO person (id, dataset_id, name) VALUES (?, ?, 'Alice')`, aliceID, dsID)
	raw := dsID + ":user-rw:" + aliceID
	good := ids.Namespaced(raw, aliceID+":"+contentC, "summary")
	d.exec(`INSERT INTO summary (id, dataset_id, person_id, content_id, progress) VALUES (?, ?, ?, ?, 0.5)`, good, dsID, aliceID, contentC)
	d.exec(`INSERT INTO summary (id, dataset_id, person_id, content_id, progress) VALUES (?, ?, ?, 'other', 0.5)`, bobID, dsID, aliceID)
	r := d.serialize(ctx)
	if r.Created != 3 || r.Failed != 1 {
		t.Fatalf("serialization: %+v", r)
	}
	if s := d.storeRow(good); s == nil || s.SourceID != aliceID+":"+contentC || s.Partition != raw {
		t.Errorf("summary record: %+v", s)
	}
	st, err := d.db.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := ids.Namespaced(raw, aliceID+":other", "summary")
	if len(st.Problems) != 1 || st.Problems[0].ID != bobID || !strings.Contains(st.Problems[0].Reason, want) {
		t.Errorf("problems: %+v", st.Problems)
	}
}

// putRecord writes a store record as a merge would, dirty, for
// deserialization tests.
func (d *device) putRecord(id, model, partition, serialized string, deleted bool) {
	d.t.Helper()
	d.exec(`INSERT INTO morango_store (id, profile, serialized, deleted, last_saved_instance, last_saved_counter,
		partition, model_name, dirty_bit) VALUES (?, 'testdata', ?, ?, ?, 1, ?, ?, 1)
		ON CONFLICT (id) DO UPDATE SET serialized = excluded.serialized, deleted = excluded.deleted, dirty_bit = 1`,
		id, serialized, deleted, strings.Repeat("e", 32), partition, model)
	d.exec(`INSERT INTO morango_recordmaxcounter (store_model_id, instance_id, counter) VALUES (?, ?, 1) ON CONFLICT DO NOTHING`, id, strings.Repeat("e", 32))
}

func TestDeserializeOrderPendingAndDrift(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "b")
	d.init(ctx)
	p := dsID + ":user-rw:" + aliceID
	// Children arrive before their parents, and a reply before the note it
	// answers (a self-reference).
	d.putRecord(note2ID, "note", p, `{"id":"`+note2ID+`","dataset_id":"`+dsID+`","person_id":"`+aliceID+`","parent_id":"`+note1ID+`","body":"reply"}`, false)
	d.putRecord(note1ID, "note", p, `{"id":"`+note1ID+`","dataset_id":"`+dsID+`","person_id":"`+aliceID+`","parent_id":null,"body":"hello","from_newer_app":1}`, false)
	// The person record lacks nickname (an older app) and carries a key
	// this app does not know (a newer one).
	d.putRecord(aliceID, "person", dsID+":user-ro:"+aliceID, `{"id":"`+aliceID+`","dataset_id":"`+dsID+`","name":"Alice","shoe_size":38}`, false)

	// The dataset is missing: the person and the notes stay pending.
	res, err := d.db.Deserialize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Written != 0 || res.Pending != 3 {
		t.Fatalf("first deserialization: %+v", res)
	}
	if r := d.storeRow(aliceID); !r.Dirty || !strings.Contains(r.Error, "dataset_id: dataset "+dsID+" does not exist yet") {
		t.Errorf("pending person: %+v", r)
	}

	// The dataset arrives: everything is written, parents first.
	d.putRecord(dsID, "dataset", dsID, `{"id":"`+dsID+`","name":"School"}`, false)
	res, err = d.db.Deserialize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Written != 4 || res.Pending != 0 {
		t.Fatalf("second deserialization: %+v", res)
	}
	var nick, body string
	if err := d.app.QueryRow(`SELECT nickname FROM person WHERE id = ?`, aliceID).Scan(&nick); err != nil || nick != "none" {
		t.Errorf("missing column did not take its default: %q %v", nick, err)
	}
	if err := d.app.QueryRow(`SELECT body FROM note WHERE id = ?`, note2ID).Scan(&body); err != nil || body != "reply" {
		t.Errorf("reply: %q %v", body, err)
	}
	// Writes made by deserialization are not local changes.
	if n := d.count(`SELECT count(*) FROM morango_dirty`); n != 0 {
		t.Errorf("%d rows marked dirty by deserialization", n)
	}
	if r := d.serialize(ctx); r.Versions() != 0 {
		t.Errorf("deserialized rows re-serialized: %+v", r)
	}

	// A deleted record leaves the app; the children of a deleted record go too.
	d.putRecord(aliceID, "person", dsID+":user-ro:"+aliceID, `{"id":"`+aliceID+`"}`, true)
	d.putRecord(note1ID, "note", p, `{"id":"`+note1ID+`","dataset_id":"`+dsID+`","person_id":"`+aliceID+`","parent_id":null,"body":"edited"}`, false)
	if _, err := d.db.Deserialize(ctx); err != nil {
		t.Fatal(err)
	}
	if n := d.count(`SELECT count(*) FROM person`); n != 0 {
		t.Errorf("deleted person still in app")
	}
	if n := d.count(`SELECT count(*) FROM note WHERE id = ?`, note1ID); n != 0 {
		t.Errorf("note of a deleted person still in app")
	}
	// ... and the next serialization records that deletion.
	if r := d.serialize(ctx); r.Deleted != 1 || !d.storeRow(note1ID).Deleted {
		t.Errorf("propagated deletion: %+v", r)
	}
}
