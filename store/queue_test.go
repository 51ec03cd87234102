package store

import (
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math/rand/v2"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/morango-sync/morango/fsic"
)

// selectorQuery returns the statement Queue.Select runs for one selector,
// read from queue.go itself so that the plan checked here is the plan of
// the statement the store runs: the string concatenation in Select that
// inserts into temp.morango_queue from morango_recordmaxcounter, with cond
// (the partition range) put in.
func selectorQuery(t *testing.T, cond string) string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "queue.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, decl := range f.Decls {
		fn, ok := decl.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "Select" || fn.Recv == nil {
			continue
		}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			be, ok := n.(*ast.BinaryExpr)
			if !ok || be.Op != token.ADD {
				return true
			}
			var b strings.Builder
			var flatten func(e ast.Expr) bool
			flatten = func(e ast.Expr) bool {
				switch e := e.(type) {
				case *ast.BinaryExpr:
					return e.Op == token.ADD && flatten(e.X) && flatten(e.Y)
				case *ast.BasicLit:
					s, err := strconv.Unquote(e.Value)
					b.WriteString(s)
					return e.Kind == token.STRING && err == nil
				case *ast.Ident:
					b.WriteString(cond)
					return e.Name == "cond"
				}
				return false
			}
			if flatten(be) && strings.Contains(b.String(), "temp.morango_queue") && strings.Contains(b.String(), "morango_recordmaxcounter") {
				found = append(found, b.String())
			}
			return false
		})
	}
	if len(found) != 1 {
		t.Fatalf("found %d selector statements in (*Queue).Select, want 1: this test reads the statement from queue.go and must follow its shape", len(found))
	}
	return found[0]
}

// queuePlan returns the EXPLAIN QUERY PLAN details of the selector
// statement for one selector.
func queuePlan(t *testing.T, db *DB, sel Selector) []string {
	t.Helper()
	ctx := context.Background()
	cond, args := rangeSQL("s.partition", sel.Partition)
	q := selectorQuery(t, cond)
	args = append([]any{sel.Instance, sel.After, db.profile.Name}, args...)
	conn, err := db.r.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `CREATE TEMP TABLE IF NOT EXISTS morango_queue (id TEXT PRIMARY KEY) WITHOUT ROWID`); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.QueryContext(ctx, `EXPLAIN QUERY PLAN `+q, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, q)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return plan
}

// putHistory adds a version by instance to a record's history.
func (d *device) putHistory(id, instance string, counter int64) {
	d.t.Helper()
	d.exec(`INSERT INTO morango_recordmaxcounter (store_model_id, instance_id, counter) VALUES (?, ?, ?)
		ON CONFLICT (store_model_id, instance_id) DO UPDATE SET counter = excluded.counter`, id, instance, counter)
}

// putStoreRow writes a bare store row (the history is written apart).
func (d *device) putStoreRow(id, profile, partition string) {
	d.t.Helper()
	d.exec(`INSERT INTO morango_store (id, profile, serialized, last_saved_instance, last_saved_counter, partition, model_name)
		VALUES (?, ?, '{}', ?, 1, ?, 'note')`, id, profile, strings.Repeat("e", 32), partition)
}

var scanRE = regexp.MustCompile(`^SCAN (s|r|morango_store|morango_recordmaxcounter)\b`)

func TestQueueSelectUsesInstanceIndex(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "a")
	d.init(ctx)
	// Some data, so that the plan is not that of empty tables.
	for i := range 200 {
		ds := []string{dsID, "a_b", "a%b"}[i%3]
		id := fmt.Sprintf("%032x", i+1)
		d.exec(`INSERT INTO person (id, dataset_id, name) VALUES (?, ?, ?)`, id, ds, fmt.Sprint("p", i))
	}
	d.serialize(ctx)
	other := strings.Repeat("9", 32)
	for i := range 50 {
		d.putHistory(fmt.Sprintf("%032x", i+1), other, int64(i+1))
	}
	me := d.db.instance.ID
	for _, sel := range []Selector{
		{Partition: "", Instance: me, After: 0},
		{Partition: dsID, Instance: me, After: 0},
		{Partition: dsID + ":user-ro:", Instance: other, After: 10},
		{Partition: dsID + ":user-ro:" + fmt.Sprintf("%032x", 3), Instance: other, After: 1},
		{Partition: "a_b", Instance: me, After: 5},
		{Partition: "a%", Instance: other, After: 0},
		{Partition: "\xff", Instance: me, After: 0},
	} {
		plan := queuePlan(t, d.db, sel)
		uses := false
		for _, p := range plan {
			if strings.Contains(p, "INDEX morango_recordmaxcounter_instance") {
				uses = true
			}
			if scanRE.MatchString(p) {
				t.Errorf("selector %+v: full scan %q; plan %q", sel, p, plan)
			}
		}
		if !uses {
			t.Errorf("selector %+v: the plan does not use morango_recordmaxcounter_instance: %q", sel, plan)
		}
	}
}

// copyAll imports every record of from into to, with from's counters, as
// an import of a bundle holding everything does.
func copyAll(t *testing.T, from, to *device, filter []string) {
	t.Helper()
	ctx := context.Background()
	q, err := from.db.OpenQueue(ctx, filter)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	dmc, err := q.MaxCounters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var batch []*Record
	err = q.Each(ctx, func(r *Record) error {
		cp := *r
		cp.History = slices.Clone(r.History)
		batch = append(batch, &cp)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	importBatch(t, to.db, batch, fsic.Claims(fsic.Calculate(dmc, filter, nil), filter))
}

// queueFor queues, on from, what a peer holding theirs lacks under
// filter, as an export for the peer's manifest does, and returns the
// selectors and the ids queued.
func queueFor(t *testing.T, from *DB, theirs fsic.V2, filter []string) ([]Selector, []string) {
	t.Helper()
	ctx := context.Background()
	q, err := from.OpenQueue(ctx, filter)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	dmc, err := q.MaxCounters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mine := fsic.Calculate(dmc, filter, nil)
	var sels []Selector
	for _, s := range fsic.Selectors(fsic.Diff(fsic.Expand(mine, filter), fsic.Expand(theirs, filter))) {
		sels = append(sels, Selector{Partition: s.Partition, Instance: s.Instance, After: s.After})
	}
	if err := q.Select(ctx, sels); err != nil {
		t.Fatal(err)
	}
	_, total, err := q.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := q.Each(ctx, func(r *Record) error { got = append(got, r.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if int64(len(got)) != total {
		t.Errorf("Counts says %d records, Each gives %d", total, len(got))
	}
	sort.Strings(got)
	return sels, got
}

func TestQueueNothingForPeerWithEverything(t *testing.T) {
	ctx := context.Background()
	a, b := newDevice(t, "a"), newDevice(t, "b")
	a.init(ctx)
	b.init(ctx)
	filter := []string{dsID}
	a.exec(`INSERT INTO dataset (id, name) VALUES (?, 'School')`, dsID)
	a.exec(`INSERT INTO person (id, dataset_id, name) VALUES (?, ?, 'Alice'), (?, ?, 'Bob')`, aliceID, dsID, bobID, dsID)
	a.exec(`INSERT INTO note (id, dataset_id, person_id, body) VALUES (?, ?, ?, 'hi')`, note1ID, dsID, aliceID)
	a.serialize(ctx)
	a.exec(`UPDATE person SET name = 'Alicia' WHERE id = ?`, aliceID)
	a.serialize(ctx)
	copyAll(t, a, b, filter)

	theirs, err := b.db.FSIC(ctx, filter)
	if err != nil {
		t.Fatal(err)
	}
	if sels, got := queueFor(t, a.db, theirs, filter); len(sels) != 0 || len(got) != 0 {
		t.Fatalf("peer holds everything, yet selectors %+v queue %q", sels, got)
	}
	// B holds more than A (its own edit): A still has nothing for B.
	b.exec(`UPDATE person SET name = 'Bobby' WHERE id = ?`, bobID)
	b.serialize(ctx)
	if theirs, err = b.db.FSIC(ctx, filter); err != nil {
		t.Fatal(err)
	}
	if sels, got := queueFor(t, a.db, theirs, filter); len(sels) != 0 || len(got) != 0 {
		t.Fatalf("peer holds more, yet selectors %+v queue %q", sels, got)
	}
	// One new version on A: exactly that record.
	a.exec(`UPDATE note SET body = 'hello' WHERE id = ?`, note1ID)
	a.serialize(ctx)
	if _, got := queueFor(t, a.db, theirs, filter); !slices.Equal(got, []string{note1ID}) {
		t.Fatalf("after one edit the queue holds %q, want the note", got)
	}
	// B takes it; B's history-only knowledge then goes back: A lacks B's
	// version of Bob, and nothing else.
	copyAll(t, a, b, filter)
	mine, err := a.db.FSIC(ctx, filter)
	if err != nil {
		t.Fatal(err)
	}
	if _, got := queueFor(t, b.db, mine, filter); !slices.Equal(got, []string{bobID}) {
		t.Fatalf("B queues %q for A, want Bob only", got)
	}
	// A peer that knows nothing gets everything under the filter.
	if _, got := queueFor(t, a.db, fsic.V2{Super: fsic.Partitions{}, Sub: fsic.Partitions{}}, filter); len(got) != 4 {
		t.Fatalf("for an empty peer the queue holds %q, want 4 records", got)
	}
}

// queueSelect opens a queue under filter, narrows it with sels (unless
// sels is nil) and returns the ids it holds.
func queueSelect(t *testing.T, db *DB, filter []string, sels []Selector) []string {
	t.Helper()
	ctx := context.Background()
	q, err := db.OpenQueue(ctx, filter)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if sels != nil {
		if err := q.Select(ctx, sels); err != nil {
			t.Fatal(err)
		}
	}
	counts, total, err := q.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := q.Each(ctx, func(r *Record) error { got = append(got, r.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if int64(len(got)) != total || (total > 0 && counts["note"] != total) {
		t.Errorf("Counts says %d (%v), Each gives %d", total, counts, len(got))
	}
	sort.Strings(got)
	if dup := len(got) - len(slices.Compact(slices.Clone(got))); dup > 0 {
		t.Errorf("%d records queued twice", dup)
	}
	return got
}

func TestQueueSelectorSemantics(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "a")
	d.init(ctx)
	profile := d.db.profile.Name
	insts := []string{strings.Repeat("1", 32), strings.Repeat("2", 32), strings.Repeat("3", 32)}

	type rec struct {
		id, profile, partition string
		hist                   map[string]int64
	}
	var recs []rec
	put := func(profile, partition string, hist map[string]int64) {
		r := rec{id: fmt.Sprintf("%032x", len(recs)+1), profile: profile, partition: partition, hist: hist}
		recs = append(recs, r)
		d.putStoreRow(r.id, profile, partition)
		for i, c := range hist {
			d.putHistory(r.id, i, c)
		}
	}
	// Partitions that a LIKE pattern built from the prefix would confuse.
	fixed := []string{"a_b", "a_b:x", "axb", "axb:x", "a%b", "a%b:x", "aZZb", "a%", "a_", "a", "ab", "a\\b", "a\\_b",
		"A_b", "a_b\xff", "a\xff", "a\xff\xff", "b", "", "a_bc", "ÿ", "\U0010ffff", "a%%"}
	for _, p := range fixed {
		put(profile, p, map[string]int64{insts[0]: 5, insts[1]: 2})
	}
	// The same partitions under another profile are never queued.
	put("otherprofile", "a_b", map[string]int64{insts[0]: 9})
	put("otherprofile", "axb", map[string]int64{insts[0]: 9})
	// Random partitions and histories.
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "b", "_", "%", "\\", ":", "x", "\xff", "ÿ"}
	randPart := func(max int) string {
		var b strings.Builder
		for range rng.IntN(max + 1) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		return b.String()
	}
	for range 300 {
		hist := map[string]int64{}
		for _, i := range insts {
			if rng.IntN(2) == 0 {
				hist[i] = 1 + rng.Int64N(9)
			}
		}
		if len(hist) == 0 {
			hist[insts[0]] = 1
		}
		put(profile, randPart(5), hist)
	}

	want := func(filter []string, sels []Selector) []string {
		var out []string
		for _, r := range recs {
			if r.profile != profile {
				continue
			}
			inFilter := false
			for _, f := range filter {
				if strings.HasPrefix(r.partition, f) {
					inFilter = true
				}
			}
			if !inFilter {
				continue
			}
			hit := sels == nil
			for _, s := range sels {
				if strings.HasPrefix(r.partition, s.Partition) && r.hist[s.Instance] > s.After {
					hit = true
				}
			}
			if hit {
				out = append(out, r.id)
			}
		}
		sort.Strings(out)
		return out
	}
	check := func(filter []string, sels []Selector) {
		t.Helper()
		got := queueSelect(t, d.db, filter, sels)
		if w := want(filter, sels); !slices.Equal(got, w) {
			t.Errorf("filter %q, selectors %+v:\n got %d records %q\nwant %d records %q", filter, sels, len(got), got, len(w), w)
		}
	}

	// A prefix with _ or % matches only itself.
	check([]string{""}, []Selector{{Partition: "a_b", Instance: insts[0], After: 0}})
	check([]string{""}, []Selector{{Partition: "a%", Instance: insts[0], After: 0}})
	check([]string{""}, []Selector{{Partition: "a_", Instance: insts[1], After: 1}})
	check([]string{""}, []Selector{{Partition: "a\\", Instance: insts[1], After: 1}})
	check([]string{""}, []Selector{{Partition: "a\xff", Instance: insts[0], After: 4}})
	check([]string{""}, []Selector{{Partition: "\xff", Instance: insts[0], After: 4}})
	// The counter bound is strict, per instance.
	check([]string{""}, []Selector{{Partition: "a", Instance: insts[0], After: 5}})
	check([]string{""}, []Selector{{Partition: "a", Instance: insts[1], After: 1}})
	check([]string{""}, []Selector{{Partition: "a", Instance: insts[2], After: 0}})
	// Filters with wildcards, with and without selectors.
	check([]string{"a_b"}, nil)
	check([]string{"a%"}, nil)
	check([]string{"a_", "a%b"}, nil)
	check([]string{"a_b", "a_b:x"}, nil)
	check([]string{"a_"}, []Selector{{Partition: "", Instance: insts[0], After: 0}})
	check([]string{"a%b"}, []Selector{{Partition: "a", Instance: insts[0], After: 0}, {Partition: "a%b:", Instance: insts[1], After: 0}})
	// An empty selector list selects nothing.
	check([]string{""}, []Selector{})

	for range 300 {
		filter := []string{randPart(2)}
		if rng.IntN(3) == 0 {
			filter = append(filter, randPart(3))
		}
		var sels []Selector
		if rng.IntN(5) > 0 {
			sels = []Selector{}
			for range rng.IntN(4) {
				sels = append(sels, Selector{Partition: randPart(3), Instance: insts[rng.IntN(len(insts))], After: rng.Int64N(9)})
			}
		}
		check(filter, sels)
		if t.Failed() {
			break
		}
	}
}
