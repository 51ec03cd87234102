package session_test

import (
	"math/rand/v2"
	"testing"
)

// Two concurrent hard deletions of a note: A's (the winner: higher
// counter) and C's. B re-creates the note over A's deletion, which it keeps
// as a tombstone. When C's deletion reaches B, the merge erases the
// re-creation and promotes the tombstone, which is neither B's head nor
// C's. A made that version itself. Every device must store the same
// _self_ref_fk for it, "" (a hard deletion erases the parent with the
// data); A once kept the note's old parent.
func TestSelfRefOfHardDeletion(t *testing.T) {
	scLoadFixture(t)
	s := &scSim{t: t, ctx: t.Context(), seed: 3, rng: rand.New(rand.NewPCG(3, 3)), dir: t.TempDir(), root: scFixture.root.ID,
		applied: map[string]map[int]bool{}, newest: map[[2]int]int{}, created: map[string]string{},
		hardDel: map[string]bool{}, recreated: map[string]bool{}, stats: map[string]int{}}
	for i := range 4 {
		s.devs = append(s.devs, s.newDevice(i, ""))
	}
	a, b, c, d := s.devs[0], s.devs[1], s.devs[2], s.devs[3]
	send := func(from, to *scDevice) {
		bf, _ := s.export(from, to.idx, s.writeManifest(to), true)
		if bf != nil {
			s.importBundle(bf, to)
		}
	}
	bump := func(d *scDevice, person string, n int) {
		for i := range n {
			s.exec(d, `UPDATE person SET age = ? WHERE id = ?`, 100+i, person)
			_, err := d.db.Serialize(s.ctx)
			s.check(err, "serialize")
		}
	}
	pa, p, n := s.rid(), s.rid(), s.rid()
	s.exec(a, `INSERT INTO person (id, dataset_id, name, age) VALUES (?, ?, 'a', 1)`, pa, s.root)
	s.exec(a, `INSERT INTO note (id, dataset_id, person_id, parent_id, body) VALUES (?, ?, ?, NULL, 'parent')`, p, s.root, pa)
	s.exec(a, `INSERT INTO note (id, dataset_id, person_id, parent_id, body) VALUES (?, ?, ?, ?, 'child')`, n, s.root, pa, p)
	for _, x := range []*scDevice{b, c, d} {
		send(a, x)
	}

	bump(a, pa, 20)
	s.check(a.db.HardDelete(s.ctx, "note", n), "hard delete on A") // high counter: wins among hard deletions
	s.check(c.db.HardDelete(s.ctx, "note", n), "hard delete on C") // concurrent, low counter
	send(a, b)
	// B re-creates the note: its head, with A's hard deletion as tombstone.
	s.exec(b, `INSERT INTO note (id, dataset_id, person_id, parent_id, body) VALUES (?, ?, ?, ?, 'again')`, n, s.root, pa, p)
	_, err := b.db.Serialize(s.ctx)
	s.check(err, "serialize")
	send(b, d) // D: B's re-creation, A's tombstone
	send(c, b) // B: the re-creation erased, A's tombstone promoted
	send(c, a) // A: its own deletion stays the head
	send(d, a) // A: B's re-creation erased, its own deletion stays the head
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
