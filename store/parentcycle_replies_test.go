package store

import (
	"context"
	"fmt"
	"testing"
)

// Two notes moved under each other (a parent cycle) with many replies
// under one of them, all new to this device, whose app declares the note
// table's foreign keys (with no index on parent_id). The replies arrived
// first and waited for their parent. Only the cycle is written by one
// statement; the replies follow in the waves, parents first: written in the
// cycle's statement, each would keep a declared foreign key open until its
// end, and SQLite would check every row inserted meanwhile against the
// whole table (quadratic: tens of seconds for 20 000 replies, with the
// app's database locked). Every row is written, as under a note the app
// holds.
func TestParentCycleWithManyRepliesIsWritten(t *testing.T) {
	ctx := context.Background()
	const n = 2000
	run := func(cycle bool) {
		d := newFKDevice(t, fmt.Sprintf("c%v", cycle))
		d.exec(`INSERT INTO dataset (id, name) VALUES (?, 'School')`, dsID)
		d.exec(`INSERT INTO person (id, dataset_id, name) VALUES (?, ?, 'Alice')`, aliceID, dsID)
		if !cycle {
			d.exec(`INSERT INTO note (id, dataset_id, person_id, parent_id, body) VALUES (?, ?, ?, NULL, 'x')`, cycleID(1), dsID, aliceID)
		}
		d.serialize(ctx)
		p := dsID + ":user-rw:" + aliceID
		tx, err := d.app.Begin()
		if err != nil {
			t.Fatal(err)
		}
		put := func(i, parent int) {
			ser := fmt.Sprintf(`{"id":"%s","dataset_id":"%s","person_id":"%s","parent_id":"%s","body":"n%d"}`, cycleID(i), dsID, aliceID, cycleID(parent), i)
			if _, err := tx.Exec(`INSERT INTO morango_store (id, profile, serialized, deleted, last_saved_instance, last_saved_counter,
				partition, model_name, dirty_bit) VALUES (?, 'testdata', ?, 0, 'eeee', 1, ?, 'note', 1)
				ON CONFLICT (id) DO UPDATE SET serialized = excluded.serialized, dirty_bit = 1`, cycleID(i), ser, p); err != nil {
				t.Fatal(err)
			}
		}
		// The replies arrived first (they waited for their parent), the
		// moved notes later.
		for i := 3; i < n+3; i++ {
			put(i, 1)
		}
		if cycle {
			put(1, 2)
		}
		put(2, 1)
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		res, err := d.db.Deserialize(ctx)
		if err != nil || res.Pending != 0 || res.Written != int64(n+1+map[bool]int{true: 1}[cycle]) {
			t.Fatalf("cycle %v: %+v %v", cycle, res, err)
		}
		if v := d.count(`SELECT count(*) FROM pragma_foreign_key_check`); v != 0 {
			t.Fatalf("cycle %v: %d foreign key violations", cycle, v)
		}
	}
	run(false)
	run(true)
}
