package session_test

import (
	"math/rand/v2"
	"testing"
)

// A merge whose new head is one of the local record's concurrent versions
// (the incoming state superseded the local head but not that sibling)
// copies _self_ref_fk from the incoming record, whose head lost. The
// record's parent column then disagrees with its head, and with the same
// record on a device that merged in another order; nothing ever repairs it.
// A record's _self_ref_fk names the parent of its head version, whichever
// version ends up the head: here the merge on A promotes B's version of a
// note, which was one of A's conflicting versions, over the incoming one
// from C. Every device must store the same, and it must be the head's
// parent (a stale one once came from the incoming record).
func TestSelfRefFollowsHead(t *testing.T) {
	scLoadFixture(t)
	s := &scSim{t: t, ctx: t.Context(), seed: 3, rng: rand.New(rand.NewPCG(3, 3)), dir: t.TempDir(), root: scFixture.root.ID,
		applied: map[string]map[int]bool{}, newest: map[[2]int]int{}, created: map[string]string{},
		hardDel: map[string]bool{}, recreated: map[string]bool{}, stats: map[string]int{}}
	for i := range 3 {
		s.devs = append(s.devs, s.newDevice(i, ""))
	}
	a, b, c := s.devs[0], s.devs[1], s.devs[2]
	send := func(from, to *scDevice) {
		bf, _ := s.export(from, to.idx, s.writeManifest(to), true)
		if bf != nil {
			s.importBundle(bf, to)
		}
	}
	// bump raises a device's counter by n serializations.
	bump := func(d *scDevice, person string, n int) {
		for i := range n {
			s.exec(d, `UPDATE person SET age = ? WHERE id = ?`, 100+i, person)
			_, err := d.db.Serialize(s.ctx)
			s.check(err, "serialize")
		}
	}
	pa, pb := s.rid(), s.rid()
	p1, p2, p3, n := s.rid(), s.rid(), s.rid(), s.rid()
	s.exec(a, `INSERT INTO person (id, dataset_id, name, age) VALUES (?, ?, 'a', 1), (?, ?, 'b', 1)`, pa, s.root, pb, s.root)
	for _, p := range []string{p1, p2, p3} {
		s.exec(a, `INSERT INTO note (id, dataset_id, person_id, parent_id, body) VALUES (?, ?, ?, NULL, 'parent')`, p, s.root, pa)
	}
	s.exec(a, `INSERT INTO note (id, dataset_id, person_id, parent_id, body) VALUES (?, ?, ?, ?, 'child')`, n, s.root, pa, p1)
	send(a, b)
	send(a, c)

	// B moves the note under p3 (counter ~12); A, concurrently, under p2
	// (counter ~22).
	bump(b, pb, 10)
	s.exec(b, `UPDATE note SET parent_id = ? WHERE id = ?`, p3, n)
	bump(b, pb, 1)
	bump(a, pa, 20)
	s.exec(a, `UPDATE note SET parent_id = ? WHERE id = ?`, p2, n)
	bump(a, pa, 1)
	// C sees A's move, then moves the note back under p1 (small counter).
	send(a, c)
	s.exec(c, `UPDATE note SET parent_id = ? WHERE id = ?`, p1, n)
	// A hears from B (A's move stays the head, B's is kept), then from C:
	// C superseded A's move, so B's move becomes the head.
	send(b, a)
	send(c, a)
	// B hears from C directly.
	send(c, b)
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
