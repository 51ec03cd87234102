package session_test

import "testing"

// A record's _self_ref_fk names the parent of its head version, whichever
// version ends up the head: here the merge on A promotes B's version of a
// note, which was one of A's conflicting versions, over the incoming one
// from C. Every device must store the same, and it must be the head's
// parent (a stale one once came from the incoming record).
func TestSelfRefFollowsHead(t *testing.T) {
	s := newTestSim(t, 3, 3)
	a, b, c := s.devs[0], s.devs[1], s.devs[2]
	pa, pb := s.rid(), s.rid()
	p1, p2, p3, n := s.rid(), s.rid(), s.rid(), s.rid()
	s.exec(a, `INSERT INTO person (id, dataset_id, name, age) VALUES (?, ?, 'a', 1), (?, ?, 'b', 1)`, pa, s.root, pb, s.root)
	for _, p := range []string{p1, p2, p3} {
		s.exec(a, `INSERT INTO note (id, dataset_id, person_id, parent_id, body) VALUES (?, ?, ?, NULL, 'parent')`, p, s.root, pa)
	}
	s.exec(a, `INSERT INTO note (id, dataset_id, person_id, parent_id, body) VALUES (?, ?, ?, ?, 'child')`, n, s.root, pa, p1)
	s.send(a, b)
	s.send(a, c)

	// B moves the note under p3 (counter ~12); A, concurrently, under p2
	// (counter ~22).
	s.bump(b, pb, 10)
	s.exec(b, `UPDATE note SET parent_id = ? WHERE id = ?`, p3, n)
	s.bump(b, pb, 1)
	s.bump(a, pa, 20)
	s.exec(a, `UPDATE note SET parent_id = ? WHERE id = ?`, p2, n)
	s.bump(a, pa, 1)
	// C sees A's move, then moves the note back under p1 (small counter).
	s.send(a, c)
	s.exec(c, `UPDATE note SET parent_id = ? WHERE id = ?`, p1, n)
	// A hears from B (A's move stays the head, B's is kept), then from C:
	// C superseded A's move, so B's move becomes the head.
	s.send(b, a)
	s.send(c, a)
	// B hears from C directly.
	s.send(c, b)
	s.converge()

	for _, d := range s.devs {
		var parent, selfRef string
		err := d.app.QueryRow(`SELECT json_extract(serialized, '$.parent_id'), _self_ref_fk FROM morango_store WHERE id = ?`, n).Scan(&parent, &selfRef)
		s.check(err, "read note")
		if parent != selfRef {
			t.Errorf("device %d: note's head has parent_id %s but _self_ref_fk %s", d.idx, parent[:6], selfRef[:6])
		}
	}
	var fa, fb string
	a.app.QueryRow(`SELECT _self_ref_fk FROM morango_store WHERE id = ?`, n).Scan(&fa)
	b.app.QueryRow(`SELECT _self_ref_fk FROM morango_store WHERE id = ?`, n).Scan(&fb)
	if fa != fb {
		t.Errorf("after convergence the note's store row differs: _self_ref_fk %s on A, %s on B", fa[:6], fb[:6])
	}
}

// Two devices move two notes under each other at once (the classic
// tree-move race), and one makes a third note its own parent: merged, the
// notes form parent cycles (a → b → a, c → c). The devices that held the
// notes write the moves; a device that receives all three fresh must write
// them too (no order of single rows gets them in, parents first), and end
// with the same app rows and nothing pending.
func TestSelfRefCycleWrittenOnFreshDevice(t *testing.T) {
	s := newTestSim(t, 31, 3)
	a, b := s.devs[0], s.devs[1]
	p, na, nb, nc := s.rid(), s.rid(), s.rid(), s.rid()
	s.exec(a, `INSERT INTO person (id, dataset_id, name, age) VALUES (?, ?, 'p', 1)`, p, s.root)
	s.exec(a, `INSERT INTO note (id, dataset_id, person_id, parent_id, body) VALUES (?, ?, ?, NULL, 'a'), (?, ?, ?, NULL, 'b'),
		(?, ?, ?, NULL, 'c')`, na, s.root, p, nb, s.root, p, nc, s.root, p)
	s.send(a, b)
	// Concurrent moves: A puts note a under b, B puts note b under a; A
	// makes note c its own parent.
	s.exec(a, `UPDATE note SET parent_id = ? WHERE id = ?`, nb, na)
	s.exec(a, `UPDATE note SET parent_id = id WHERE id = ?`, nc)
	s.exec(b, `UPDATE note SET parent_id = ? WHERE id = ?`, na, nb)
	s.send(a, b)
	s.send(b, a)
	// The third device has never seen the notes.
	s.converge()
	want := map[string]string{na: nb, nb: na, nc: nc}
	for _, d := range s.devs {
		for id, parent := range want {
			var got string
			if err := d.app.QueryRow(`SELECT coalesce(parent_id, '') FROM note WHERE id = ?`, id).Scan(&got); err != nil || got != parent {
				t.Errorf("device %d: note %.6s has parent %.6s (%v), want %.6s", d.idx, id, got, err, parent)
			}
		}
		var pending int
		s.check(d.app.QueryRow(`SELECT count(*) FROM morango_store WHERE dirty_bit`).Scan(&pending), "count pending")
		if pending != 0 {
			t.Errorf("device %d: %d records pending", d.idx, pending)
		}
	}
	s.assertConverged()
}

// Two concurrent hard deletions of a note: A's (the winner: higher
// counter) and C's. B re-creates the note over A's deletion, which it keeps
// as a tombstone. When C's deletion reaches B, the merge erases the
// re-creation and promotes the tombstone, which is neither B's head nor
// C's. A made that version itself. Every device must store the same
// _self_ref_fk for it, "" (a hard deletion erases the parent with the
// data); A once kept the note's old parent.
func TestSelfRefOfHardDeletion(t *testing.T) {
	s := newTestSim(t, 3, 4)
	a, b, c, d := s.devs[0], s.devs[1], s.devs[2], s.devs[3]
	pa, p, n := s.rid(), s.rid(), s.rid()
	s.exec(a, `INSERT INTO person (id, dataset_id, name, age) VALUES (?, ?, 'a', 1)`, pa, s.root)
	s.exec(a, `INSERT INTO note (id, dataset_id, person_id, parent_id, body) VALUES (?, ?, ?, NULL, 'parent')`, p, s.root, pa)
	s.exec(a, `INSERT INTO note (id, dataset_id, person_id, parent_id, body) VALUES (?, ?, ?, ?, 'child')`, n, s.root, pa, p)
	for _, x := range []*scDevice{b, c, d} {
		s.send(a, x)
	}

	s.bump(a, pa, 20)
	s.check(a.db.HardDelete(s.ctx, "note", n), "hard delete on A") // high counter: wins among hard deletions
	s.check(c.db.HardDelete(s.ctx, "note", n), "hard delete on C") // concurrent, low counter
	s.send(a, b)
	// B re-creates the note: its head, with A's hard deletion as tombstone.
	s.exec(b, `INSERT INTO note (id, dataset_id, person_id, parent_id, body) VALUES (?, ?, ?, ?, 'again')`, n, s.root, pa, p)
	_, err := b.db.Serialize(s.ctx)
	s.check(err, "serialize")
	s.send(b, d) // D: B's re-creation, A's tombstone
	s.send(c, b) // B: the re-creation erased, A's tombstone promoted
	s.send(c, a) // A: its own deletion stays the head
	s.send(d, a) // A: B's re-creation erased, its own deletion stays the head
	s.converge()

	got := map[int]string{}
	for _, x := range s.devs {
		var ref string
		var hard bool
		s.check(x.app.QueryRow(`SELECT hard_deleted, _self_ref_fk FROM morango_store WHERE id = ?`, n).Scan(&hard, &ref), "read")
		if !hard || ref != "" {
			t.Errorf("device %d: hard deleted %v, _self_ref_fk %q", x.idx, hard, ref)
		}
		got[x.idx] = ref
	}
	for i := 1; i < len(s.devs); i++ {
		if got[i] != got[0] {
			t.Fatalf("after convergence the same hard-deleted head has _self_ref_fk %q on A, %q on device %d", got[0], got[i], i)
		}
	}
}

// bump raises d's counter by n serializations of changes to person.
func (s *scSim) bump(d *scDevice, person string, n int) {
	s.t.Helper()
	for i := range n {
		s.exec(d, `UPDATE person SET age = ? WHERE id = ?`, 100+i, person)
		_, err := d.db.Serialize(s.ctx)
		s.check(err, "serialize")
	}
}
