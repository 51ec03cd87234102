package session

import (
	"testing"

	"github.com/morango-sync/morango/ids"
)

// uniqueNames makes user names unique in the app's schema.
const uniqueNames = `CREATE UNIQUE INDEX facilityuser_username ON facilityuser (username);`

// namedUsers makes a facility and a city device whose apps have unique
// user names, seeds the facility and sends it to the city; send moves what
// from has for to, and returns how many records (none when there is
// nothing to send).
func namedUsers(t *testing.T) (fac, city *device, f facilityData, send func(from, to *device) int64) {
	dir := t.TempDir()
	send = func(from, to *device) int64 {
		n, _ := from.sendTo(to, dir, true)
		return n
	}
	fac = newAppDevice(t, "facility", uniqueNames, "")
	fac.root()
	city = newAppDevice(t, "city", uniqueNames, "")
	grant(t, fac, city, "full-facility", map[string]string{"dataset_id": fac.cert})
	f = seedFacility(fac)
	send(fac, city)
	return fac, city, f, send
}

// Two valid edits on one device, under a unique index of the app: user B
// is renamed, then user A takes B's old name. Another device's app gets
// both in one batch, in an order where A's row comes first and is refused
// until B's is written; it must not stay refused once nothing is left to
// send.
func TestUniqueRenameChain(t *testing.T) {
	fac, city, f, send := namedUsers(t)

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

// Users swap names under a unique index of the app, by way of a third name
// on the device where it happens: the records carry only the end state, in
// which each row takes a value another row still holds. Written one by one
// each row is refused for good; another device must still end with the
// swap, and with nothing left waiting.
func TestUniqueSwapCycle(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edits func(f facilityData) [][2]string // id, new name, in order
		want  func(f facilityData) map[string]string
	}{
		{"two", func(f facilityData) [][2]string {
			return [][2]string{{f.learner, "tmp"}, {f.other, "ana"}, {f.learner, "ben"}}
		}, func(f facilityData) map[string]string {
			return map[string]string{f.learner: "ben", f.other: "ana", f.admin: "coach"}
		}},
		{"three", func(f facilityData) [][2]string {
			return [][2]string{{f.learner, "tmp"}, {f.admin, "ana"}, {f.other, "coach"}, {f.learner, "ben"}}
		}, func(f facilityData) map[string]string {
			return map[string]string{f.learner: "ben", f.other: "coach", f.admin: "ana"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fac, city, f, send := namedUsers(t)
			for _, e := range tc.edits(f) {
				fac.exec(`UPDATE facilityuser SET username = ? WHERE id = ?`, e[1], e[0])
			}
			send(fac, city)
			// The app rows written are not the app's own changes.
			if n := city.count(`SELECT count(*) FROM morango_dirty`); n != 0 {
				t.Errorf("city: %d app row(s) marked as changed by the app", n)
			}
			for round := 0; round < 4; round++ {
				if send(fac, city)+send(city, fac) == 0 {
					break
				}
			}
			for id, name := range tc.want(f) {
				for _, d := range []*device{fac, city} {
					if n := d.count(`SELECT count(*) FROM facilityuser WHERE id = ? AND username = ?`, id, name); n != 1 {
						var got string
						d.app.QueryRow(`SELECT username FROM facilityuser WHERE id = ?`, id).Scan(&got)
						t.Errorf("%s: user %s is %q, want %q", d.name, id[:8], got, name)
					}
				}
			}
			if n := city.count(`SELECT count(*) FROM morango_store WHERE dirty_bit`); n != 0 {
				var why string
				city.app.QueryRow(`SELECT group_concat(deserialization_error, '; ') FROM morango_store WHERE dirty_bit`).Scan(&why)
				t.Errorf("city: %d record(s) wait: %s", n, why)
			}
		})
	}
}

// A swap among records of which another is refused for good: the swap is
// written, the other row keeps its value, and its record waits. And when a
// row of the swap cannot get its value back (the only way to write the
// other is to take it), nothing is written, and no placeholder is left.
func TestUniqueSwapAmongRefused(t *testing.T) {
	name := func(d *device, id string) string {
		var s string
		if err := d.app.QueryRow(`SELECT username FROM facilityuser WHERE id = ?`, id).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	waiting := func(d *device, ids ...string) (n int) {
		for _, id := range ids {
			n += int(d.count(`SELECT count(*) FROM morango_store WHERE id = ? AND dirty_bit AND deserialization_error LIKE '%UNIQUE%'`, id))
		}
		return n
	}
	noPlaceholder := func(d *device) {
		if n := d.count(`SELECT count(*) FROM facilityuser WHERE username LIKE 'morango-placeholder:%'`); n != 0 {
			t.Errorf("%s: %d placeholder(s) left in the app", d.name, n)
		}
	}

	t.Run("swap and a clash", func(t *testing.T) {
		fac, city, f, send := namedUsers(t)
		for _, e := range [][2]string{{f.learner, "tmp"}, {f.other, "ana"}, {f.learner, "ben"}, {f.admin, "dan"}} {
			fac.exec(`UPDATE facilityuser SET username = ? WHERE id = ?`, e[1], e[0])
		}
		city.exec(`INSERT INTO facilityuser (id, dataset_id, username) VALUES (?, ?, 'dan')`, ids.Random(), f.dataset)
		send(fac, city)
		if a, b, c := name(city, f.learner), name(city, f.other), name(city, f.admin); a != "ben" || b != "ana" || c != "coach" {
			t.Errorf("city: learner %q, other %q, admin %q; want ben, ana, coach", a, b, c)
		}
		if n := waiting(city, f.admin); n != 1 {
			t.Errorf("city: the admin's record does not wait with its reason")
		}
		if n := waiting(city, f.learner, f.other); n != 0 {
			t.Errorf("city: %d record(s) of the swap wait", n)
		}
		noPlaceholder(city)
	})

	t.Run("value that cannot be given back", func(t *testing.T) {
		fac, city, f, send := namedUsers(t)
		// The learner leaves "ana" for a name city's app holds already;
		// the other user takes "ana".
		for _, e := range [][2]string{{f.learner, "zed"}, {f.other, "ana"}} {
			fac.exec(`UPDATE facilityuser SET username = ? WHERE id = ?`, e[1], e[0])
		}
		city.exec(`INSERT INTO facilityuser (id, dataset_id, username) VALUES (?, ?, 'zed')`, ids.Random(), f.dataset)
		send(fac, city)
		if a, b := name(city, f.learner), name(city, f.other); a != "ana" || b != "ben" {
			t.Errorf("city: learner %q, other %q; want ana, ben as before", a, b)
		}
		if n := waiting(city, f.learner, f.other); n != 2 {
			t.Errorf("city: %d of the 2 records wait", n)
		}
		noPlaceholder(city)
	})
}
