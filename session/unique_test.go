package session

import (
	"database/sql"
	"fmt"
	"strings"
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
	fac, city, f, send = swapDevices(t, uniqueNames, uniqueNames, "")
	send(fac, city)
	return fac, city, f, send
}

// swapDevices makes a facility and a city device with the extra schema and
// models of each app, and seeds the facility; send is as for namedUsers.
func swapDevices(t *testing.T, facSchema, citySchema, models string) (fac, city *device, f facilityData, send func(from, to *device) int64) {
	dir := t.TempDir()
	send = func(from, to *device) int64 {
		n, _ := from.sendTo(to, dir, true)
		return n
	}
	fac = newAppDevice(t, "facility", facSchema, models)
	fac.root()
	city = newAppDevice(t, "city", citySchema, models)
	grant(t, fac, city, "full-facility", map[string]string{"dataset_id": fac.cert})
	return fac, city, seedFacility(fac), send
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
		if n := d.count(`SELECT count(*) FROM facilityuser WHERE username LIKE '~%'`); n != 0 {
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

// A newer app version on City has a unique column nick that the older app
// on Facility lacks: Facility's records carry no "nick" key, and City keeps
// its own value for a key a record lacks. Two users swap names on Facility;
// City must write the swap and keep every nick.
func TestUniqueSwapKeepsWhatRecordsLack(t *testing.T) {
	for _, tc := range []struct{ name, nick string }{
		{"nullable", `ALTER TABLE facilityuser ADD COLUMN nick TEXT;
CREATE UNIQUE INDEX facilityuser_nick ON facilityuser (nick);`},
		// NOT NULL: the placeholder text itself stays in the app.
		{"not null", `ALTER TABLE facilityuser ADD COLUMN nick TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX facilityuser_nick ON facilityuser (nick) WHERE nick <> '';`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fac, city, f, send := swapDevices(t, uniqueNames, uniqueNames+"\n"+tc.nick, "")
			send(fac, city)
			city.exec(`UPDATE facilityuser SET nick = 'nick-' || username`)

			for _, e := range [][2]string{{f.learner, "tmp"}, {f.other, "ana"}, {f.learner, "ben"}, {f.admin, "dan"}} {
				fac.exec(`UPDATE facilityuser SET username = ? WHERE id = ?`, e[1], e[0])
			}
			send(fac, city)
			// The admin's plain rename (no swap) keeps City's nick: the control.
			for id, want := range map[string][2]string{f.admin: {"dan", "nick-coach"}, f.learner: {"ben", "nick-ana"}, f.other: {"ana", "nick-ben"}} {
				var name string
				var nick sql.NullString
				if err := city.app.QueryRow(`SELECT username, nick FROM facilityuser WHERE id = ?`, id).Scan(&name, &nick); err != nil {
					t.Fatal(err)
				}
				if name != want[0] || nick.String != want[1] {
					t.Errorf("city: user %s is %q nick %v, want %q nick %q", id[:8], name, nick, want[0], want[1])
				}
			}
		})
	}
}

// A self-referencing model with a unique name and a unique code. In one
// deserialization a folder is written in a first wave and its child in a
// second; meanwhile R and T swap names, and R also takes a code that a
// folder of City's own holds. Written together, T gets its name but R is
// still refused and cannot get its name back, so nothing is written. Both
// must stay pending (the rollback gives back the count of records left
// to write), and get through once the code is free.
func TestUniqueSwapRolledBackStaysPending(t *testing.T) {
	const schema = `CREATE TABLE folder (id TEXT PRIMARY KEY, dataset_id TEXT NOT NULL, parent_id TEXT, name TEXT NOT NULL, code TEXT NOT NULL);
CREATE UNIQUE INDEX folder_name ON folder (name);
CREATE UNIQUE INDEX folder_code ON folder (code);`
	const models = `{"name": "folder", "table": "folder", "partition": "${dataset_id}:allusers-ro", "foreign_keys": {"parent_id": "folder"}},`
	fac, city, f, send := swapDevices(t, schema, schema, models)
	r, tt, x, c := ids.Random(), ids.Random(), ids.Random(), ids.Random()
	fac.exec(`INSERT INTO folder (id, dataset_id, name, code) VALUES (?, ?, 'ana', 'r'), (?, ?, 'ben', 't')`, r, f.dataset, tt, f.dataset)
	send(fac, city)
	city.exec(`INSERT INTO folder (id, dataset_id, name, code) VALUES (?, ?, 'zed', 'zz')`, ids.Random(), f.dataset)

	fac.exec(`UPDATE folder SET name = 'tmp' WHERE id = ?`, r)
	fac.exec(`UPDATE folder SET name = 'ana' WHERE id = ?`, tt)
	fac.exec(`UPDATE folder SET name = 'ben', code = 'zz' WHERE id = ?`, r)
	fac.exec(`INSERT INTO folder (id, dataset_id, name, code) VALUES (?, ?, 'x', 'x')`, x, f.dataset)
	fac.exec(`INSERT INTO folder (id, dataset_id, parent_id, name, code) VALUES (?, ?, ?, 'c', 'c')`, c, f.dataset, x)
	send(fac, city)

	if n := city.count(`SELECT count(*) FROM folder WHERE id IN (?, ?)`, x, c); n != 2 {
		t.Fatalf("city: %d of folder x and its child written", n)
	}
	if n := city.count(`SELECT count(*) FROM folder WHERE (id = ? AND name = 'ana' AND code = 'r') OR (id = ? AND name = 'ben' AND code = 't')`, r, tt); n != 2 {
		t.Errorf("city: %d of the 2 folders as they were", n)
	}
	if n := city.count(`SELECT count(*) FROM morango_store WHERE id IN (?, ?) AND dirty_bit`, r, tt); n != 2 {
		t.Errorf("city: %d of the 2 refused records pending (dirty_bit), want 2: they would never be retried", n)
	}
	// Once "zz" is free on City, both must get through.
	city.exec(`UPDATE folder SET code = 'zoe' WHERE code = 'zz'`)
	fac.exec(`UPDATE facilityuser SET full_name = 'touch' WHERE id = ?`, f.admin) // something to send
	for range 3 {
		send(fac, city)
		send(city, fac)
	}
	for id, want := range map[string]string{r: "ben/zz", tt: "ana/t"} {
		var got string
		city.app.QueryRow(`SELECT name || '/' || code FROM folder WHERE id = ?`, id).Scan(&got)
		if got != want {
			t.Errorf("city: folder %s is %q, want %q (as on facility)", id[:8], got, want)
		}
	}
}

// Swaps under various app schemas: each must end with the swap written on
// City, nothing waiting, no placeholder, and nothing marked as the app's
// change; a unique index on an expression is not freed, and the swap
// waits, with nothing written.
func TestUniqueSwapSchemas(t *testing.T) {
	for _, tc := range []struct{ name, table, schema string }{
		{"without rowid, odd names", `odd "t"`, `CREATE TABLE "odd ""t""" (id TEXT PRIMARY KEY, dataset_id TEXT NOT NULL, "user name" TEXT NOT NULL UNIQUE, extra TEXT) WITHOUT ROWID;`},
		{"composite", "item", `CREATE TABLE item (id TEXT PRIMARY KEY, dataset_id TEXT NOT NULL, "user name" TEXT NOT NULL, extra TEXT, UNIQUE (dataset_id, "user name"));`},
		{"partial", "item", `CREATE TABLE item (id TEXT PRIMARY KEY, dataset_id TEXT NOT NULL, "user name" TEXT NOT NULL, extra TEXT);
CREATE UNIQUE INDEX item_u ON item ("user name") WHERE extra IS NULL;`},
		{"two indexes", "item", `CREATE TABLE item (id TEXT PRIMARY KEY, dataset_id TEXT NOT NULL, "user name" TEXT NOT NULL UNIQUE, extra TEXT UNIQUE);`},
		{"table o", "o", `CREATE TABLE o (id TEXT PRIMARY KEY, dataset_id TEXT NOT NULL, "user name" TEXT NOT NULL UNIQUE, extra TEXT);`},
		{"expression", "item", `CREATE TABLE item (id TEXT PRIMARY KEY, dataset_id TEXT NOT NULL, "user name" TEXT NOT NULL, extra TEXT);
CREATE UNIQUE INDEX item_u ON item (lower("user name"));`},
		{"length check", "item", `CREATE TABLE item (id TEXT PRIMARY KEY, dataset_id TEXT NOT NULL, "user name" TEXT NOT NULL UNIQUE CHECK (length("user name") <= 40), extra TEXT);`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tq := `"` + strings.ReplaceAll(tc.table, `"`, `""`) + `"`
			models := fmt.Sprintf(`{"name": "item", "table": %q, "partition": "${dataset_id}:allusers-ro"},`, tc.table)
			fac, city, f, send := swapDevices(t, tc.schema, tc.schema, models)
			a, b := ids.Random(), ids.Random()
			fac.exec(`INSERT INTO `+tq+` (id, dataset_id, "user name") VALUES (?, ?, 'ana'), (?, ?, 'ben')`, a, f.dataset, b, f.dataset)
			send(fac, city)
			for _, e := range [][2]string{{a, "tmp"}, {b, "ana"}, {a, "ben"}} {
				fac.exec(`UPDATE `+tq+` SET "user name" = ? WHERE id = ?`, e[1], e[0])
			}
			send(fac, city)
			want, waits := map[string]string{a: "ben", b: "ana"}, 0
			if tc.name == "expression" {
				want, waits = map[string]string{a: "ana", b: "ben"}, 2
			}
			for id, want := range want {
				var got sql.NullString
				city.app.QueryRow(`SELECT "user name" FROM `+tq+` WHERE id = ?`, id).Scan(&got)
				if got.String != want {
					t.Errorf("city: %s is %v, want %q", id[:8], got, want)
				}
			}
			if n := city.count(`SELECT count(*) FROM morango_store WHERE dirty_bit`); n != waits {
				var why string
				city.app.QueryRow(`SELECT group_concat(deserialization_error, '; ') FROM morango_store WHERE dirty_bit`).Scan(&why)
				t.Errorf("city: %d wait: %s", n, why)
			}
			if n := city.count(`SELECT count(*) FROM ` + tq + ` WHERE "user name" LIKE '~%' OR extra LIKE '~%'`); n != 0 {
				t.Errorf("city: %d placeholder(s)", n)
			}
			if n := city.count(`SELECT count(*) FROM morango_dirty`); n != 0 {
				t.Errorf("city: %d row(s) in morango_dirty", n)
			}
		})
	}
}
