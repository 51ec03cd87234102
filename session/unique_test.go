package session

import "testing"

// Two valid edits on one device, under a unique index of the app: user B
// is renamed, then user A takes B's old name. Another device's app gets
// both in one batch, in an order where A's row comes first and is refused
// until B's is written; it must not stay refused once nothing is left to
// send.
func TestUniqueRenameChain(t *testing.T) {
	const uniqueNames = `CREATE UNIQUE INDEX facilityuser_username ON facilityuser (username);`
	dir := t.TempDir()
	send := func(from, to *device) int64 { // nothing when there is nothing to send
		n, _ := from.sendTo(to, dir, true)
		return n
	}
	fac := newAppDevice(t, "facility", uniqueNames, "")
	fac.root()
	city := newAppDevice(t, "city", uniqueNames, "")
	grant(t, fac, city, "full-facility", map[string]string{"dataset_id": fac.cert})
	f := seedFacility(fac)
	send(fac, city)

	// The two users in City's store rowid order.
	var first, second, secondName string
	if err := city.app.QueryRow(`SELECT s.id FROM morango_store s WHERE s.id IN (?, ?) ORDER BY s.rowid LIMIT 1`, f.learner, f.other).Scan(&first); err != nil {
		t.Fatal(err)
	}
	second = f.other
	if first == f.other {
		second = f.learner
	}
	if err := fac.app.QueryRow(`SELECT username FROM facilityuser WHERE id = ?`, second).Scan(&secondName); err != nil {
		t.Fatal(err)
	}
	fac.exec(`UPDATE facilityuser SET username = 'zed' WHERE id = ?`, second)
	fac.exec(`UPDATE facilityuser SET username = ? WHERE id = ?`, secondName, first)

	for round := 0; round < 4; round++ {
		moved := send(fac, city) + send(city, fac)
		if moved == 0 {
			break
		}
	}
	want, got := fac.count(`SELECT count(*) FROM facilityuser WHERE id = ? AND username = ?`, first, secondName), city.count(`SELECT count(*) FROM facilityuser WHERE id = ? AND username = ?`, first, secondName)
	pending := city.count(`SELECT count(*) FROM morango_store WHERE dirty_bit`)
	if want != 1 || got != 1 {
		var err string
		city.app.QueryRow(`SELECT deserialization_error FROM morango_store WHERE id = ?`, first).Scan(&err)
		t.Errorf("nothing left to send, but user %s is %q on facility and not on city (%d record(s) pending on city: %s)", first[:8], secondName, pending, err)
	}
}
