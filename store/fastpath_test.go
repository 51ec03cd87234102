package store

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/morango-sync/morango/fsic"
	"github.com/morango-sync/morango/ids"
)

// The history an import writes is the merged history of each record,
// whether its entries are written from the store row (the head) or one by
// one: records new here with one entry or several, a head that is not
// the highest counter of its instance's entries, the same record twice in
// one batch, and a fast-forward of a local record.
func TestImportHistories(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "d")
	d.init(ctx)
	d.exec(`INSERT INTO dataset (id, name) VALUES (?, 'D')`, dsID)
	d.serialize(ctx)
	me := d.storeRow(dsID).LSI
	x, y := strings.Repeat("1", 32), strings.Repeat("2", 32)
	id := func(i int) string { return fmt.Sprintf("%032x", 0xe000+i) }
	rec := func(i int, head HistoryEntry, hist ...HistoryEntry) *Record {
		return &Record{ID: id(i), Profile: "testdata", ModelName: "person", Partition: dsID + ":user-ro:" + id(i),
			Serialized:        fmt.Sprintf(`{"id":"%s","dataset_id":"%s","name":"p%d"}`, id(i), dsID, head.Counter),
			LastSavedInstance: head.Instance, LastSavedCounter: head.Counter, History: hist}
	}
	// A local record for the fast-forward.
	d.exec(`INSERT INTO person (id, dataset_id, name) VALUES (?, ?, 'local')`, id(4), dsID)
	d.serialize(ctx)
	local := d.history(id(4))[me]

	batch := []*Record{
		rec(1, HistoryEntry{x, 3}, HistoryEntry{x, 3}),
		rec(2, HistoryEntry{y, 3}, HistoryEntry{x, 5}, HistoryEntry{y, 3}),
		rec(3, HistoryEntry{x, 2}, HistoryEntry{x, 7}),
		rec(5, HistoryEntry{x, 1}, HistoryEntry{x, 1}),
		rec(5, HistoryEntry{y, 4}, HistoryEntry{x, 1}, HistoryEntry{y, 4}),
		rec(4, HistoryEntry{y, 9}, HistoryEntry{me, local}, HistoryEntry{y, 9}),
	}
	importBatch(t, d.db, batch, nil)
	want := map[string]map[string]int64{
		id(1): {x: 3},
		id(2): {x: 5, y: 3},
		id(3): {x: 7},
		id(4): {me: local, y: 9},
		id(5): {x: 1, y: 4},
	}
	for rid, w := range want {
		if got := d.history(rid); !maps.Equal(got, w) {
			t.Errorf("history of %s: %v, want %v", rid, got, w)
		}
	}
	if r := d.storeRow(id(4)); r.LSI != y || r.LSC != 9 {
		t.Errorf("fast-forward: head %s:%d", r.LSI, r.LSC)
	}
}

// Ids that are not 32 lower-case hex digits stay out of the store, with
// the reason.
func TestSerializeRefusesBadIDs(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "d")
	d.init(ctx)
	d.exec(`INSERT INTO dataset (id, name) VALUES (?, 'D')`, dsID)
	bad := []any{
		strings.Repeat("A", 32),                                 // upper case
		strings.Repeat("a", 31),                                 // short
		strings.Repeat("a", 33),                                 // long
		strings.Repeat("a", 31) + "g",                           // not hex
		strings.Repeat("a", 30) + "é",                           // not ASCII
		strings.Repeat("a", 31) + " ",                           // space
		int64(12345678901234567),                                // not text
		strings.Repeat("a", 16) + "-" + strings.Repeat("b", 15), // dash
	}
	for _, id := range bad {
		d.exec(`INSERT INTO dataset (id, name) VALUES (?, 'bad')`, id)
	}
	res := d.serialize(ctx)
	if res.Created != 1 || res.Failed != int64(len(bad)) {
		t.Fatalf("serialize: %+v, want 1 created and %d failed", res, len(bad))
	}
	if n := d.count(`SELECT count(*) FROM morango_dirty WHERE error = 'id must be 32 lower-case hex digits'`); n != len(bad) {
		t.Errorf("%d rows have the reason, want %d", n, len(bad))
	}
	if n := d.count(`SELECT count(*) FROM morango_store`); n != 1 {
		t.Errorf("%d records, want 1", n)
	}
}

// A serialization of more rows than a transaction takes maps the
// database file only while it runs.
func TestSerializeUnmaps(t *testing.T) {
	chunk(t, 2)
	ctx := context.Background()
	d := newDevice(t, "d")
	d.init(ctx)
	d.exec(`INSERT INTO dataset (id, name) VALUES (?, 'D')`, dsID)
	for i := range 5 {
		d.exec(`INSERT INTO person (id, dataset_id, name) VALUES (?, ?, 'p')`, fmt.Sprintf("%032x", i+1), dsID)
	}
	if res := d.serialize(ctx); res.Created != 6 || res.Counter < 3 {
		t.Fatalf("serialize: %+v, want 6 records over 3 transactions", res)
	}
	var size int64
	if err := d.db.w.QueryRowContext(ctx, `PRAGMA mmap_size`).Scan(&size); err != nil {
		t.Fatal(err)
	}
	if size != 0 {
		t.Errorf("mmap_size %d after Serialize, want 0", size)
	}
}

// jsonObjectSQL builds the same text as setting each column into an empty
// object, for tables wider than one json_object call takes, and for every
// kind of value.
func TestJSONObjectSQL(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "d")
	var cols, defs []string
	for i := range 130 {
		c := fmt.Sprintf("c%d", i)
		if i == 7 {
			c = `we"ird col`
		}
		cols = append(cols, c)
		defs = append(defs, quote(c))
	}
	d.exec(`CREATE TABLE wide (` + strings.Join(defs, ", ") + `)`)
	vals := make([]any, len(cols))
	for i := range vals {
		switch i % 5 {
		case 0:
			vals[i] = fmt.Sprintf(`text "%d" \ ü`, i)
		case 1:
			vals[i] = int64(i) << 40
		case 2:
			vals[i] = float64(i) + 0.25
		case 3:
			vals[i] = nil
		case 4:
			vals[i] = `{"looks":"like json"}`
		}
	}
	d.exec(`INSERT INTO wide VALUES (?`+strings.Repeat(", ?", len(cols)-1)+`)`, vals...)
	for _, n := range []int{1, 49, 50, 51, 130} {
		var a, b string
		err := d.app.QueryRowContext(ctx, `SELECT `+jsonObjectSQL("t", cols[:n])+`, `+jsonSetSQL("json_object()", "t", cols[:n])+` FROM wide t`).Scan(&a, &b)
		if err != nil {
			t.Fatal(err)
		}
		if a != b {
			t.Errorf("%d columns:\n%s\n%s", n, a, b)
		}
	}
}

// importBatch imports the records of batch into db in one transaction,
// with the claims, and fails the test if one is refused.
func importBatch(t *testing.T, db *DB, batch []*Record, claims []fsic.MaxCounter) {
	t.Helper()
	ctx := context.Background()
	im, err := db.BeginImport(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer im.Abort()
	if err := im.Add(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if r := im.Result(); r.Refused > 0 {
		t.Fatalf("refused: %+v", r.Refusals)
	}
	if err := im.Claim(ctx, claims); err != nil {
		t.Fatal(err)
	}
	if _, err := im.Finish(ctx, Applied{}); err != nil {
		t.Fatal(err)
	}
}

// A serialization in several transactions takes each its rows off the
// dirty list by a range of ids: rows that fail in the middle of a
// transaction's range stay on it with their reason, the others all leave.
func TestSerializeChunksWithFailures(t *testing.T) {
	chunk(t, 3)
	ctx := context.Background()
	d := newDevice(t, "d")
	d.init(ctx)
	d.exec(`INSERT INTO dataset (id, name) VALUES (?, 'D')`, dsID)
	var bad int
	for i := range 14 {
		id := fmt.Sprintf("%032x", i+1)
		if i%4 == 1 || i == 13 {
			id = strings.ToUpper(fmt.Sprintf("%031x", i+1)) + "F" // sorts between good ids, fails the id check
			bad++
		}
		d.exec(`INSERT INTO person (id, dataset_id, name) VALUES (?, ?, 'p')`, id, dsID)
	}
	res := d.serialize(ctx)
	if res.Created != int64(15-bad) || res.Failed != int64(bad) {
		t.Fatalf("serialize: %+v, want %d created, %d failed", res, 15-bad, bad)
	}
	if n := d.count(`SELECT count(*) FROM morango_dirty WHERE error = ''`); n != 0 {
		t.Errorf("%d rows left dirty without an error", n)
	}
	if n := d.count(`SELECT count(*) FROM morango_dirty WHERE error <> ''`); n != bad {
		t.Errorf("%d rows with an error, want %d", n, bad)
	}
	if n := d.count(`SELECT count(*) FROM morango_store`); n != 15-bad {
		t.Errorf("%d records, want %d", n, 15-bad)
	}
}

// The filter of ids an import wrote never misses one, and seldom
// reports an id it was not given.
func TestSeenSet(t *testing.T) {
	s := newSeenSet(100000)
	for i := range 100000 {
		s.add(fmt.Sprintf("%032x", i))
	}
	for i := range 100000 {
		if !s.contains(fmt.Sprintf("%032x", i)) {
			t.Fatalf("id %d added but not seen", i)
		}
	}
	var fp int
	for i := range 100000 {
		if s.contains(fmt.Sprintf("%032x", 1<<40+i)) {
			fp++
		}
	}
	if fp > 200 {
		t.Errorf("%d of 100000 ids never added reported as seen", fp)
	}
}

// An import into an empty store merges a record that comes twice, in two
// batches, into one: the second is looked up, found and merged.
func TestImportRepeatedIntoEmptyStore(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "d")
	d.init(ctx)
	x := strings.Repeat("1", 32)
	rec := func(name string, c int64) *Record {
		return &Record{ID: dsID, Profile: "testdata", ModelName: "dataset", Partition: dsID,
			Serialized: fmt.Sprintf(`{"id":"%s","name":"%s"}`, dsID, name), LastSavedInstance: x, LastSavedCounter: c,
			History: []HistoryEntry{{x, c}}}
	}
	im, err := d.db.BeginImport(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer im.Abort()
	if im.seen == nil {
		t.Fatal("an import into an empty store does not filter its lookups")
	}
	for _, b := range [][]*Record{{rec("one", 1)}, {rec("two", 2)}} {
		if err := im.Add(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	r := im.Result()
	if r.New != 1 || r.FastForward != 1 || r.Refused != 0 {
		t.Fatalf("result %+v, want 1 new and 1 fast-forward", r)
	}
	if _, err := im.Finish(ctx, Applied{}); err != nil {
		t.Fatal(err)
	}
	if n := d.count(`SELECT count(*) FROM morango_store`); n != 1 {
		t.Errorf("%d store rows, want 1", n)
	}
	if got := d.storeRow(dsID); got.LSC != 2 || !strings.Contains(got.Serialized, "two") {
		t.Errorf("record %+v, want the second version", got)
	}
	var name string
	if err := d.app.QueryRow(`SELECT name FROM dataset WHERE id = ?`, dsID).Scan(&name); err != nil || name != "two" {
		t.Errorf("app row %q (%v), want the second version", name, err)
	}
}

// A value of a partition template's column may not hold the separator
// ":": a note of P2 whose dataset_id is "D:user-rw:P1" renders a partition
// under P1's prefix. Such rows stay out of the store with the reason, as
// importers would refuse their records; so do edits that put one in.
func TestSerializeRefusesSeparatorInPartitionValues(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "d")
	d.init(ctx)
	d.exec(`INSERT INTO dataset (id, name) VALUES (?, 'D')`, dsID)
	p1, p2 := ids.Random(), ids.Random()
	d.exec(`INSERT INTO person (id, dataset_id, name) VALUES (?, ?, 'P1'), (?, ?, 'P2')`, p1, dsID, p2, dsID)
	good, bad := ids.Random(), ids.Random()
	d.exec(`INSERT INTO note (id, dataset_id, person_id, body) VALUES (?, ?, ?, 'mine')`, good, dsID, p1)
	d.exec(`INSERT INTO note (id, dataset_id, person_id, body) VALUES (?, ?, ?, 'forged')`, bad, dsID+":user-rw:"+p1, p2)
	res := d.serialize(ctx)
	if res.Created != 4 || res.Failed != 1 {
		t.Fatalf("serialize: %+v, want 4 created and 1 failed", res)
	}
	var reason string
	if err := d.app.QueryRow(`SELECT error FROM morango_dirty WHERE id = ?`, bad).Scan(&reason); err != nil || !strings.Contains(reason, `holds ":"`) {
		t.Errorf("reason %q, %v", reason, err)
	}
	if d.storeRow(bad) != nil || d.storeRow(good) == nil {
		t.Error("the row with the separator reached the store, or the other did not")
	}

	// Edits of recorded rows: importers render the partition from the
	// data, so a separator or a NULL in a partition column waits too.
	other, third := ids.Random(), ids.Random()
	d.exec(`INSERT INTO note (id, dataset_id, person_id, body) VALUES (?, ?, ?, 'b'), (?, ?, ?, 'c')`, other, dsID, p1, third, dsID, p1)
	d.serialize(ctx)
	before := d.storeRow(good).Serialized
	d.exec(`UPDATE note SET dataset_id = dataset_id || ':x' WHERE id = ?`, good)
	d.exec(`UPDATE note SET person_id = NULL WHERE id = ?`, other)
	d.exec(`UPDATE note SET body = 'edited' WHERE id = ?`, third)
	res = d.serialize(ctx)
	if res.Updated != 1 || res.Failed != 3 { // the first bad row still waits
		t.Fatalf("serialize edits: %+v, want 1 updated and 3 failed", res)
	}
	if d.storeRow(good).Serialized != before {
		t.Errorf("the edit with the separator reached the store: %s", d.storeRow(good).Serialized)
	}
	for id, want := range map[string]string{good: `holds ":"`, other: "is NULL"} {
		var reason string
		if err := d.app.QueryRow(`SELECT error FROM morango_dirty WHERE id = ?`, id).Scan(&reason); err != nil || !strings.Contains(reason, want) {
			t.Errorf("edit of %s: reason %q, %v; want %q", id, reason, err, want)
		}
	}
}
