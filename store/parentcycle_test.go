package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// fkNoteTable is a note table that declares its foreign keys, as an app
// may; the tests turn foreign_keys on for the engine's connection.
const fkNoteTable = `DROP TABLE note;
CREATE TABLE note (id TEXT PRIMARY KEY, dataset_id TEXT, person_id TEXT REFERENCES person (id),
	parent_id TEXT REFERENCES note (id), body TEXT);`

// newFKDevice is a device whose note table declares its foreign keys, with
// foreign_keys on for the engine's connection.
func newFKDevice(t *testing.T, name string) *device {
	t.Helper()
	ctx := context.Background()
	d := newDevice(t, name)
	d.exec(fkNoteTable)
	d.init(ctx)
	if _, err := d.db.w.ExecContext(ctx, `PRAGMA foreign_keys = ON`); err != nil {
		t.Fatal(err)
	}
	var on bool
	if err := d.db.w.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&on); err != nil || !on {
		t.Fatalf("foreign_keys not on: %v", err)
	}
	return d
}

// parents returns the parent of every note in the app, "-" for none.
func (d *device) parents() map[string]string {
	d.t.Helper()
	rows, err := d.app.Query(`SELECT id, coalesce(parent_id, '-') FROM note`)
	if err != nil {
		d.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, p string
		if err := rows.Scan(&id, &p); err != nil {
			d.t.Fatal(err)
		}
		out[id] = p
	}
	return out
}

// noFKViolations fails the test if the app's declared foreign keys are
// broken.
func (d *device) noFKViolations() {
	d.t.Helper()
	if n := d.count(`SELECT count(*) FROM pragma_foreign_key_check`); n != 0 {
		d.t.Errorf("%d foreign-key violations in the app", n)
	}
}

// cycleID is the id of note i of the parent-cycle tests.
func cycleID(i int) string { return fmt.Sprintf("%032x", 0xf000+i) }

// Notes moved under each other on two devices at once form a parent cycle
// (1 → 2 → 1); a note may be its own parent (3); a note may hang off a
// cycle (4 under 1). Deserialized at the end of an import, with the app's
// foreign keys declared and on, they are written together, and so is a
// note the app holds that moves under a note of the cycle (7); notes
// whose parent is truly missing (5, and 6 under it) wait, as before.
func TestDeserializeWritesParentCycles(t *testing.T) {
	ctx := context.Background()
	d := newFKDevice(t, "b")
	d.exec(`INSERT INTO dataset (id, name) VALUES (?, 'School')`, dsID)
	d.exec(`INSERT INTO person (id, dataset_id, name) VALUES (?, ?, 'Alice')`, aliceID, dsID)
	d.exec(`INSERT INTO note (id, dataset_id, person_id, parent_id, body) VALUES (?, ?, ?, NULL, 'kept')`, cycleID(7), dsID, aliceID)
	d.serialize(ctx)
	p := dsID + ":user-rw:" + aliceID
	note := func(i int, parent string) {
		d.putRecord(cycleID(i), "note", p, fmt.Sprintf(`{"id":"%s","dataset_id":"%s","person_id":"%s","parent_id":%s,"body":"n%d"}`,
			cycleID(i), dsID, aliceID, parent, i), false)
	}
	note(7, `"`+cycleID(1)+`"`)
	note(4, `"`+cycleID(1)+`"`)
	note(1, `"`+cycleID(2)+`"`)
	note(2, `"`+cycleID(1)+`"`)
	note(3, `"`+cycleID(3)+`"`)
	note(6, `"`+cycleID(5)+`"`)
	note(5, `"`+cycleID(99)+`"`)
	res, err := d.db.Deserialize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Written != 5 || res.Pending != 2 {
		t.Errorf("deserialized %+v, want 5 written, 2 pending", res)
	}
	want := map[string]string{cycleID(1): cycleID(2), cycleID(2): cycleID(1), cycleID(3): cycleID(3), cycleID(4): cycleID(1),
		cycleID(7): cycleID(1)}
	if got := d.parents(); !mapsEqual(got, want) {
		t.Errorf("notes in the app: %v, want %v", got, want)
	}
	for _, i := range []int{5, 6} {
		if r := d.storeRow(cycleID(i)); !r.Dirty || !strings.Contains(r.Error, "does not exist yet") {
			t.Errorf("note %d: %+v, want pending for its missing parent", i, r)
		}
	}
	d.noFKViolations()
	// The missing parent comes: the notes that waited are written.
	note(5, "null")
	if res, err = d.db.Deserialize(ctx); err != nil || res.Written != 2 || res.Pending != 0 {
		t.Errorf("after the parent came: %+v, %v", res, err)
	}
	d.noFKViolations()
	if r := d.serialize(ctx); r.Versions() != 0 {
		t.Errorf("deserialized rows serialized again: %+v", r)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// cycleSource returns the records of a device whose notes hold parent
// cycles (its app declares no foreign keys): 1 → 2 → 1, 3 its own parent,
// 4 under 1, 5 under a note that does not exist and 6 under 5.
func cycleSource(t *testing.T) []*Record {
	ctx := context.Background()
	a := newDevice(t, "a")
	a.init(ctx)
	a.exec(`INSERT INTO dataset (id, name) VALUES (?, 'School')`, dsID)
	a.exec(`INSERT INTO person (id, dataset_id, name) VALUES (?, ?, 'Alice')`, aliceID, dsID)
	for i, parent := range map[int]int{1: 2, 2: 1, 3: 3, 4: 1, 5: 99, 6: 5} {
		a.exec(`INSERT INTO note (id, dataset_id, person_id, parent_id, body) VALUES (?, ?, ?, ?, ?)`,
			cycleID(i), dsID, aliceID, cycleID(parent), fmt.Sprintf("n%d", i))
	}
	a.serialize(ctx)
	return readQueue(t, a.db, nil)
}

// The first import of a device with the app's foreign keys declared and
// on writes notes whose parents form cycles, whether it writes app rows as
// it merges (the rows of a cycle are then written by Finish, together) or
// deserializes everything at its end, in any order and batch size; notes
// whose parent is missing wait.
func TestFirstImportWritesParentCycles(t *testing.T) {
	ctx := context.Background()
	recs := cycleSource(t)
	want := map[string]string{cycleID(1): cycleID(2), cycleID(2): cycleID(1), cycleID(3): cycleID(3), cycleID(4): cycleID(1)}
	for seed := range 8 {
		for _, direct := range []bool{true, false} {
			rng := rand.New(rand.NewPCG(uint64(seed), 11))
			order := slices.Clone(recs)
			n := len(order)
			if seed > 0 {
				rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
				n = 1 + rng.IntN(len(order))
			}
			func() {
				writeDirectly = direct
				defer func() { writeDirectly = true }()
				d := newFKDevice(t, fmt.Sprintf("b%d%v", seed, direct))
				im, err := d.db.BeginImport(ctx, "")
				if err != nil {
					t.Fatal(err)
				}
				defer im.Abort()
				if (im.direct != nil) != direct {
					t.Fatalf("direct writing is %v, want %v", im.direct != nil, direct)
				}
				for start := 0; start < len(order); start += n {
					var batch []*Record
					for _, r := range order[start:min(start+n, len(order))] {
						cp := *r
						batch = append(batch, &cp)
					}
					if err := im.Add(ctx, batch); err != nil {
						t.Fatal(err)
					}
				}
				res, err := im.Finish(ctx, Applied{})
				if err != nil {
					t.Fatal(err)
				}
				if res.Deserialize.Written != 6 || res.Deserialize.Pending != 2 {
					t.Errorf("seed %d, direct %v: deserialized %+v, want 6 written, 2 pending", seed, direct, res.Deserialize)
				}
				if got := d.parents(); !mapsEqual(got, want) {
					t.Errorf("seed %d, direct %v: notes in the app %v, want %v", seed, direct, got, want)
				}
				d.noFKViolations()
				if r := d.storeRow(cycleID(6)); !r.Dirty || !strings.Contains(r.Error, "does not exist yet") {
					t.Errorf("seed %d, direct %v: note under a missing parent: %+v", seed, direct, r)
				}
			}()
		}
	}
}
