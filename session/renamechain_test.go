package session

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/morango-sync/morango/ids"
)

// City gets a chain of renames under its unique index (w[m] takes w[m-1]'s
// old name) in any store order, plus b renames refused for good. Every row
// of the chain can be written, in the right order, and must be, however
// many passes over the refused rows that takes.
func TestRenameChainsInAnyOrder(t *testing.T) {
	t.Run("chain 7, refused 50", func(t *testing.T) { renameChain(t, []int{0, 3, 1, 2, 6, 4, 5}, 50) })
	t.Run("chain 40, refused 0", func(t *testing.T) { renameChain(t, rand.New(rand.NewPCG(1, 2)).Perm(40), 0) })
}

func renameChain(t *testing.T, perm []int, b int) {
	k, dir := len(perm), t.TempDir()
	send := func(from, to *device) int64 { // nothing when there is nothing to send
		n, _ := from.sendTo(to, dir, true)
		return n
	}
	fac := newAppDevice(t, "facility", "", "")
	fac.root()
	city := newAppDevice(t, "city", `CREATE UNIQUE INDEX facilityuser_username ON facilityuser (username);
CREATE TRIGGER refuse_bad BEFORE UPDATE ON facilityuser BEGIN SELECT RAISE(ABORT, 'refused') WHERE NEW.username LIKE 'bad%'; END;`, "")
	grant(t, fac, city, "full-facility", map[string]string{"dataset_id": fac.cert})
	f := seedFacility(fac)
	mine := map[string]bool{}
	for i := range k + b {
		id := ids.Random()
		mine[id] = true
		fac.exec(`INSERT INTO facilityuser (id, dataset_id, username) VALUES (?, ?, ?)`, id, f.dataset, fmt.Sprintf("u%04d", i))
	}
	send(fac, city)
	var order []string // City's store order
	rows, err := city.app.Query(`SELECT id FROM morango_store WHERE model_name = 'facilityuser' ORDER BY rowid`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		if mine[id] {
			order = append(order, id)
		}
	}
	rows.Close()
	w, old := make([]string, k), make([]string, k) // w[m]: written m-th
	for m, p := range perm {
		w[m] = order[b+p]
		fac.app.QueryRow(`SELECT username FROM facilityuser WHERE id = ?`, w[m]).Scan(&old[m])
	}
	fac.exec(`UPDATE facilityuser SET username = 'fresh' WHERE id = ?`, w[0])
	for m := 1; m < k; m++ {
		fac.exec(`UPDATE facilityuser SET username = ? WHERE id = ?`, old[m-1], w[m])
	}
	for i, id := range order[:b] {
		fac.exec(`UPDATE facilityuser SET username = ? WHERE id = ?`, fmt.Sprintf("bad%04d", i), id)
	}
	for round := 0; round < 4 && send(fac, city)+send(city, fac) > 0; round++ {
	}
	stale := 0
	for m := 1; m < k; m++ {
		stale += 1 - city.count(`SELECT count(*) FROM facilityuser WHERE id = ? AND username = ?`, w[m], old[m-1])
	}
	var why string
	city.app.QueryRow(`SELECT deserialization_error FROM morango_store WHERE id = ?`, w[k-1]).Scan(&why)
	if p := city.count(`SELECT count(*) FROM morango_store WHERE dirty_bit`); stale > 0 || p != b {
		t.Errorf("nothing left to send; %d of %d writable renames not written, %d pending (want %d); last: %q", stale, k, p, b, why)
	}
}
