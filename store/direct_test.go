package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// directSource builds a device whose records exercise what a first import
// must get right: parents and children, a reply to a note (a
// self-reference), a deleted person whose note must go with it, a record
// with a key the app lacks and one lacking a column with a default, and a
// source-id model.
func directSource(t *testing.T) (recs, twice []*Record) {
	ctx := context.Background()
	a := newDevice(t, "a")
	a.init(ctx)
	a.exec(`INSERT INTO dataset (id, name) VALUES (?, 'School')`, dsID)
	id := func(i int) string { return fmt.Sprintf("%032x", 0xc000+i) }
	for i := range 6 {
		a.exec(`INSERT INTO person (id, dataset_id, name, nickname) VALUES (?, ?, ?, ?)`, id(i), dsID, fmt.Sprintf("p%d", i), fmt.Sprintf("nick%d", i))
	}
	for i := range 12 {
		parent := any(nil)
		if i%3 == 2 {
			parent = id(100 + i - 1)
		}
		a.exec(`INSERT INTO note (id, dataset_id, person_id, parent_id, body) VALUES (?, ?, ?, ?, ?)`,
			id(100+i), dsID, id(i%6), parent, fmt.Sprintf("n%d", i))
	}
	a.serialize(ctx)
	// Person 5 is deleted with the app's own SQL; its notes stay in the
	// app of A until A deserializes, but their records reach B with it.
	a.exec(`DELETE FROM person WHERE id = ?`, id(5))
	a.serialize(ctx)

	recs = readQueue(t, a.db, nil)
	// A record from a newer app with a key this one lacks, and one from an
	// older app without the nickname column (its default applies).
	p := &Record{ID: id(50), Profile: "testdata", ModelName: "person", Partition: dsID + ":user-ro:" + id(50),
		Serialized:        fmt.Sprintf(`{"id":"%s","dataset_id":"%s","name":"old","shoe_size":41}`, id(50), dsID),
		LastSavedInstance: strings.Repeat("9", 32), LastSavedCounter: 3, History: []HistoryEntry{{strings.Repeat("9", 32), 3}}}
	recs = append(recs, p)
	// Records with data SQLite cannot read.
	bad := &Record{ID: id(60), Profile: "testdata", ModelName: "dataset", Partition: id(60),
		Serialized:        fmt.Sprintf(`{"id":"%s","name":"x"} trailing`, id(60)),
		LastSavedInstance: strings.Repeat("9", 32), LastSavedCounter: 3, History: []HistoryEntry{{strings.Repeat("9", 32), 3}}}
	recs = append(recs, bad)
	// Records that come twice: a later version of a person without the
	// nickname key, and of a note whose parent is not there.
	var person, note *Record
	for _, r := range recs {
		if r.ModelName == "person" && person == nil && strings.Contains(r.Serialized, `"nickname"`) {
			person = r
		}
		if r.ModelName == "note" && note == nil && strings.Contains(r.Serialized, `"parent_id":null`) {
			note = r
		}
	}
	if person == nil || note == nil {
		t.Fatal("no person with a nickname or no note without a parent")
	}
	again := func(r *Record, serialized string) *Record {
		cp := *r
		cp.Serialized = serialized
		cp.LastSavedInstance, cp.LastSavedCounter = strings.Repeat("9", 32), 4
		cp.History = append(slices.Clone(r.History), HistoryEntry{strings.Repeat("9", 32), 4})
		return &cp
	}
	twice = []*Record{
		again(person, fmt.Sprintf(`{"id":"%s","dataset_id":"%s","name":"again"}`, person.ID, dsID)),
		again(note, strings.Replace(note.Serialized, `"parent_id":null`, `"parent_id":"`+strings.Repeat("7", 32)+`"`, 1)),
	}
	return recs, twice
}

// importInBatches imports recs into a fresh device, in batches of size n,
// directly or not, and returns the device and the result.
func importInBatches(t *testing.T, name string, recs []*Record, n int, direct bool) (*device, *ImportResult, int64) {
	t.Helper()
	ctx := context.Background()
	writeDirectly = direct
	defer func() { writeDirectly = true }()
	d := newDevice(t, name)
	d.init(ctx)
	im, err := d.db.BeginImport(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer im.Abort()
	if (im.direct != nil) != direct {
		t.Fatalf("direct writing is %v, want %v", im.direct != nil, direct)
	}
	for start := 0; start < len(recs); start += n {
		batch := make([]*Record, 0, n)
		for _, r := range recs[start:min(start+n, len(recs))] {
			cp := *r
			batch = append(batch, &cp)
		}
		if err := im.Add(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	written := im.directWritten
	res, err := im.Finish(ctx, Applied{})
	if err != nil {
		t.Fatal(err)
	}
	return d, res, written
}

// dump returns every app row and every store row of a device as text.
func (d *device) dump() []string {
	d.t.Helper()
	var out []string
	for _, q := range []string{
		`SELECT 'dataset', id, name FROM dataset`,
		`SELECT 'person', id, dataset_id, name, nickname, local_pref FROM person`,
		`SELECT 'note', id, person_id, parent_id, body FROM note`,
		`SELECT 'summary', id, person_id, content_id, progress FROM summary`,
		`SELECT 'store', id, serialized, deleted, last_saved_instance, last_saved_counter, dirty_bit, deserialization_error FROM morango_store`,
		`SELECT 'dirty', model, id, error FROM morango_dirty`,
		`SELECT 'applying', active FROM morango_applying`,
	} {
		rows, err := d.app.Query(q)
		if err != nil {
			d.t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				d.t.Fatal(err)
			}
			out = append(out, fmt.Sprint(vals...))
		}
		rows.Close()
	}
	slices.Sort(out)
	return out
}

// A first import writes app rows as it merges records, and ends with the
// same app rows, store rows and counts as an import that deserializes
// everything at its end, whatever the order of the records and the size
// of the batches: children before parents, a deleted parent, records the
// app cannot hold yet.
func TestDirectImportMatchesDeserialization(t *testing.T) {
	recs, twice := directSource(t)
	// Seeds below 16 shuffle the records and pick a batch size; those
	// above add a record that comes twice, at the end, to records in the
	// queue's order, in batches of one and in one batch.
	for seed := range 16 + 2*len(twice) {
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		order := slices.Clone(recs)
		n := 1 + rng.IntN(len(order)+1)
		switch {
		case seed == 0:
			n = len(order)
		case seed < 16:
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			if seed%2 == 1 {
				order = slices.Insert(order, rng.IntN(len(order)+1), twice[seed/2%len(twice)])
			}
		default:
			order = append(order, twice[(seed-16)/2])
			n = []int{1, len(order)}[seed%2]
		}
		d1, r1, written := importInBatches(t, "direct", order, n, true)
		d2, r2, _ := importInBatches(t, "plain", order, n, false)
		// In the queue's order, in one batch, every record is written
		// directly but the deleted person's two notes (never written),
		// the two replies to the live persons' notes (written by Finish:
		// a statement does not see the rows it inserts) and the record
		// SQLite cannot read (refused by Finish).
		if seed == 0 && (written != 15 || r1.Deserialize.Written != 17 || r1.Deserialize.Pending != 1) {
			t.Errorf("records in the queue's order, one batch: %d of %d written directly (%d pending), want 15 of 17 (1)",
				written, r1.Deserialize.Written, r1.Deserialize.Pending)
		}
		if got, want := d1.dump(), d2.dump(); !slices.Equal(got, want) {
			t.Fatalf("seed %d, batches of %d: direct import differs:\n%s\nwant\n%s", seed, n,
				strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if r1.Deserialize != r2.Deserialize {
			t.Errorf("seed %d: deserialized %+v, want %+v", seed, r1.Deserialize, r2.Deserialize)
		}
		// The next serialization records the deletion of the deleted
		// person's notes on both, and nothing else.
		if v1, v2 := d1.serialize(context.Background()), d2.serialize(context.Background()); v1.Deleted != 2 ||
			v1.Versions() != v2.Versions() {
			t.Errorf("seed %d: serialized after the import %+v, want %+v", seed, v1, v2)
		}
		p1, _ := verifyAll(t, d1.path)
		p2, _ := verifyAll(t, d2.path)
		got := strings.ReplaceAll(describe(p1), d1.path, "DB")
		if want := strings.ReplaceAll(describe(p2), d2.path, "DB"); got != want {
			t.Errorf("seed %d: verify:\n%s\nwant\n%s", seed, got, want)
		}
	}
}

// A first import writes directly only into empty tables that have nothing
// of the app's own that could make the result depend on the order of the
// writes or undo more than one statement.
func TestDirectImportNeedsPlainTables(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct{ name, sql string }{
		{"rows", `INSERT INTO person (id, dataset_id, name) VALUES ('not-an-id', 'x', 'x')`},
		{"unique index", `CREATE UNIQUE INDEX person_name ON person (name)`},
		{"trigger", `CREATE TRIGGER person_audit AFTER INSERT ON person BEGIN SELECT 1; END`},
		{"check", `CREATE TABLE extra (id TEXT PRIMARY KEY, n INTEGER CHECK (n > 0))`},
		{"conflict clause", `CREATE TABLE extra (id TEXT PRIMARY KEY ON CONFLICT REPLACE, n INTEGER)`},
		{"trigger named in other case", `CREATE TRIGGER g BEFORE INSERT ON PERSON BEGIN SELECT 1; END`},
		{"primary key not id", `CREATE TABLE extra (id TEXT NOT NULL, n INTEGER PRIMARY KEY)`},
		{"plain", ``},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newDevice(t, "d")
			if c.sql != "" {
				d.exec(c.sql)
			}
			if strings.Contains(c.sql, "extra") {
				p := strings.Replace(testProfile, `"models": [`, `"models": [{"name": "extra", "table": "extra", "partition": "${id}"},`, 1)
				d.initWith(ctx, p)
			} else {
				d.init(ctx)
			}
			d.serialize(ctx)
			im, err := d.db.BeginImport(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			defer im.Abort()
			if want := c.name == "plain"; im.seen == nil || (im.direct != nil) != want {
				t.Errorf("store empty: %v, direct writing %v, want %v", im.seen != nil, im.direct != nil, want)
			}
		})
	}
}

// Were something of the app's own to roll the whole import's transaction
// back while a batch is written directly, the import fails and nothing of
// it stays, instead of going on outside any transaction.
func TestDirectImportTransactionRolledBack(t *testing.T) {
	ctx := context.Background()
	recs, _ := directSource(t)
	d := newDevice(t, "d")
	d.init(ctx)
	im, err := d.db.BeginImport(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer im.Abort()
	if im.direct == nil {
		t.Fatal("not writing directly")
	}
	// Inside the import's transaction, as if directTable had missed it.
	if _, err := im.tx.ExecContext(ctx, `CREATE TRIGGER guard BEFORE INSERT ON person BEGIN SELECT RAISE(ROLLBACK, 'no'); END`); err != nil {
		t.Fatal(err)
	}
	var addErr error
	for _, r := range recs {
		cp := *r
		if addErr = im.Add(ctx, []*Record{&cp}); addErr != nil {
			break
		}
	}
	if addErr == nil || !strings.Contains(addErr.Error(), "transaction is gone") {
		t.Fatalf("import went on: %v", addErr)
	}
	im.Abort()
	for _, q := range []string{`SELECT count(*) FROM morango_store`, `SELECT count(*) FROM dataset`, `SELECT count(*) FROM person`,
		`SELECT count(*) FROM sqlite_master WHERE name = 'guard'`} {
		if n := d.count(q); n != 0 {
			t.Errorf("%s: %d", q, n)
		}
	}
}
