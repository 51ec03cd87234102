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
func directSource(t *testing.T) (recs []*Record, twice *Record) {
	ctx := context.Background()
	a := newDevice(t, "a")
	a.init(ctx)
	a.exec(`INSERT INTO dataset (id, name) VALUES (?, 'School')`, dsID)
	id := func(i int) string { return fmt.Sprintf("%032x", 0xc000+i) }
	for i := range 6 {
		a.exec(`INSERT INTO person (id, dataset_id, name) VALUES (?, ?, ?)`, id(i), dsID, fmt.Sprintf("p%d", i))
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

	q, err := a.db.OpenQueue(ctx, []string{dsID})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	err = q.Each(ctx, func(r *Record) error {
		cp := *r
		cp.History = slices.Clone(r.History)
		recs = append(recs, &cp)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A record from a newer app with a key this one lacks, and one from an
	// older app without the nickname column (its default applies).
	p := &Record{ID: id(50), Profile: "testdata", ModelName: "person", Partition: dsID + ":user-ro:" + id(50),
		Serialized:        fmt.Sprintf(`{"id":"%s","dataset_id":"%s","name":"old","shoe_size":41}`, id(50), dsID),
		LastSavedInstance: strings.Repeat("9", 32), LastSavedCounter: 3, History: []HistoryEntry{{strings.Repeat("9", 32), 3}}}
	recs = append(recs, p)
	// A record that comes twice: its second version stops direct writing.
	cp := *recs[len(recs)/2]
	twice = &cp
	twice.Serialized = strings.Replace(twice.Serialized, `"name":"`, `"name":"again `, 1)
	twice.Serialized = strings.Replace(twice.Serialized, `"body":"`, `"body":"again `, 1)
	twice.LastSavedInstance, twice.LastSavedCounter = strings.Repeat("9", 32), 4
	twice.History = append(slices.Clone(twice.History), HistoryEntry{strings.Repeat("9", 32), 4})
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
	for seed := range 16 {
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		order := slices.Clone(recs)
		if seed > 0 {
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		if seed%2 == 1 {
			order = slices.Insert(order, rng.IntN(len(order)+1), twice)
		}
		n := 1 + rng.IntN(len(order))
		if seed == 0 {
			n = len(order)
		}
		d1, r1, written := importInBatches(t, "direct", order, n, true)
		d2, r2, _ := importInBatches(t, "plain", order, n, false)
		// In the queue's order, in one batch, every record is written
		// directly but the deleted person's two notes (never written)
		// and the two replies to the live persons' notes (written by
		// Finish: a statement does not see the rows it inserts).
		if seed == 0 && (written != 15 || r1.Deserialize.Written != 17) {
			t.Errorf("records in the queue's order, one batch: %d of %d written directly, want 15 of 17", written, r1.Deserialize.Written)
		}
		if got, want := d1.dump(), d2.dump(); !slices.Equal(got, want) {
			t.Fatalf("seed %d, batches of %d: direct import differs:\n%s\nwant\n%s", seed, n,
				strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if r1.Deserialize != r2.Deserialize {
			t.Errorf("seed %d: deserialized %+v, want %+v", seed, r1.Deserialize, r2.Deserialize)
		}
		if r1.Deserialize.Written == 0 || r1.Deserialize.Pending != 0 {
			t.Errorf("seed %d: %+v", seed, r1.Deserialize)
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

// A first import into a device whose app already holds rows (that could
// not be serialized, so the store is empty) deserializes at its end.
func TestDirectImportNeedsEmptyTables(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "d")
	d.init(ctx)
	d.exec(`INSERT INTO person (id, dataset_id, name) VALUES ('not-an-id', ?, 'x')`, dsID)
	d.serialize(ctx)
	im, err := d.db.BeginImport(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer im.Abort()
	if im.seen == nil || im.direct != nil {
		t.Errorf("empty store with app rows: seen %v, direct %v", im.seen != nil, im.direct != nil)
	}
}
