package session

import (
	"encoding/hex"
	"encoding/json"
	"maps"
	"math"
	"strings"
	"testing"

	"github.com/morango-sync/morango/ids"
	"github.com/morango-sync/morango/store"
)

const (
	valueTable = `CREATE TABLE note (id TEXT PRIMARY KEY, dataset_id TEXT NOT NULL, title TEXT, body);`
	valueModel = `{"name": "note", "table": "note", "partition": "${dataset_id}"},`
)

// valueDevices makes a facility and a second full-facility device of an
// app with a note table, and seeds the facility.
func valueDevices(t *testing.T) (fac, city *device) {
	t.Helper()
	fac = newAppDevice(t, "facility", valueTable, valueModel)
	fac.root()
	seedFacility(fac)
	city = newAppDevice(t, "city", valueTable, valueModel)
	grant(t, fac, city, "full-facility", map[string]string{"dataset_id": fac.cert})
	return fac, city
}

// serializeError returns the reason morango_dirty gives for the row id, or
// "" if it has none.
func (d *device) serializeError(id string) string {
	d.t.Helper()
	var e string
	d.app.QueryRow(`SELECT error FROM morango_dirty WHERE id = ?`, id).Scan(&e)
	return e
}

// noteValue returns typeof and quote of a note's body on d, or "" if the
// note is missing.
func (d *device) noteValue(id string) string {
	d.t.Helper()
	var v string
	d.app.QueryRow(`SELECT typeof(body) || ' ' || quote(body) FROM note WHERE id = ?`, id).Scan(&v)
	return v
}

// A BLOB the app writes into a synced column cannot be a record's data
// (JSON): that row waits, with a reason naming the column, and everything
// else still syncs. A blob SQLite's JSON functions would read as JSONB is
// not turned into JSON text on the way either.
func TestBlobValueWaitsAlone(t *testing.T) {
	dir := t.TempDir()
	fac, city := valueDevices(t)
	plain, blob, jsonb, edited := ids.Random(), ids.Random(), ids.Random(), ids.Random()
	fac.exec(`INSERT INTO note VALUES (?, ?, 'plain', 'text')`, plain, fac.cert)
	fac.exec(`INSERT INTO note VALUES (?, ?, 'edited', 'text')`, edited, fac.cert)
	fac.sendTo(city, dir, false)
	if got := city.noteValue(edited); got != "text 'text'" {
		t.Fatalf("city's edited note before: %q", got)
	}

	fac.exec(`INSERT INTO note VALUES (?, ?, 'blob', x'00ff01')`, blob, fac.cert)
	fac.exec(`INSERT INTO note VALUES (?, ?, 'jsonb', jsonb('{"x":1}'))`, jsonb, fac.cert)
	fac.exec(`UPDATE note SET body = x'0102' WHERE id = ?`, edited)
	fac.exec(`UPDATE note SET body = 'changed' WHERE id = ?`, plain)
	fac.sendTo(city, dir, false)
	if got := city.noteValue(plain); got != "text 'changed'" {
		t.Errorf("city's plain note: %q, want the facility's edit", got)
	}
	for _, id := range []string{blob, jsonb, edited} {
		if e := fac.serializeError(id); !strings.Contains(e, `"body"`) || !strings.Contains(e, "BLOB") {
			t.Errorf("facility's note %s waits with %q, want a reason naming the column body and BLOB", id, e)
		}
	}
	for _, id := range []string{blob, jsonb} {
		if got := city.noteValue(id); got != "" {
			t.Errorf("city got note %s as %s", id, got)
		}
	}
	if got := city.noteValue(edited); got != "text 'text'" {
		t.Errorf("city's edited note: %q, want the version before the blob", got)
	}

	// A version of the waiting row from elsewhere still imports; the
	// app's blob is logged as the change it replaces.
	city.exec(`UPDATE note SET body = 'from city' WHERE id = ?`, edited)
	city.sendTo(fac, dir, false)
	if got := fac.noteValue(edited); got != "text 'from city'" {
		t.Errorf("facility's edited note after city's edit: %q", got)
	}

	// Written as text, the rows sync.
	fac.exec(`UPDATE note SET body = hex(body) WHERE typeof(body) = 'blob'`)
	fac.sendTo(city, dir, false)
	for _, id := range []string{blob, jsonb} {
		if got, want := city.noteValue(id), fac.noteValue(id); got != want || !strings.HasPrefix(got, "text ") {
			t.Errorf("note %s: city %q, facility %q", id, got, want)
		}
	}
}

// Text that is not valid UTF-8 (Latin-1 written by an older app, say)
// cannot travel in a bundle, whose strings are UTF-8: its row waits, with a
// reason naming the column, and every other row still reaches the other
// devices. Valid text of every kind arrives byte for byte.
func TestInvalidUTF8WaitsAlone(t *testing.T) {
	dir := t.TempDir()
	fac, city := valueDevices(t)
	bad, edited, good := ids.Random(), ids.Random(), ids.Random()
	fac.exec(`INSERT INTO note VALUES (?, ?, 'edited', 'caf' || char(233))`, edited, fac.cert)
	fac.sendTo(city, dir, false)

	fac.exec(`INSERT INTO note VALUES (?, ?, 'latin-1', CAST(x'636166e9' AS TEXT))`, bad, fac.cert)
	fac.exec(`UPDATE note SET body = CAST(x'61ff00fe' AS TEXT) WHERE id = ?`, edited)
	fac.exec(`INSERT INTO note VALUES (?, ?, 'good', ?)`, good, fac.cert, "a\x00b \U0001F469\u200d\U0001F467 e\u0301 \u05e9\u05dc\u05d5\u05dd \u2028 \x7f")
	fac.sendTo(city, dir, false)
	if got, want := city.noteValue(good), fac.noteValue(good); got != want {
		t.Errorf("good note: city %q, facility %q", got, want)
	}
	var same bool
	city.app.QueryRow(`SELECT hex(body) = ? FROM note WHERE id = ?`, strings.ToUpper(hex.EncodeToString([]byte("a\x00b \U0001F469\u200d\U0001F467 e\u0301 \u05e9\u05dc\u05d5\u05dd \u2028 \x7f"))), good).Scan(&same)
	if !same {
		t.Errorf("good note's bytes differ on city")
	}
	for _, id := range []string{bad, edited} {
		if e := fac.serializeError(id); !strings.Contains(e, `"body"`) || !strings.Contains(e, "UTF-8") {
			t.Errorf("facility's note %s waits with %q, want a reason naming the column body and UTF-8", id, e)
		}
	}
	if got := city.noteValue(bad); got != "" {
		t.Errorf("city got the latin-1 note as %s", got)
	}
	if got := city.noteValue(edited); got != "text 'café'" {
		t.Errorf("city's edited note: %q, want the version before", got)
	}

	// Fixed by the app, the rows sync.
	fac.exec(`UPDATE note SET body = 'café' WHERE id IN (?, ?)`, bad, edited)
	fac.sendTo(city, dir, false)
	for _, id := range []string{bad, edited} {
		if got := city.noteValue(id); got != "text 'café'" {
			t.Errorf("note %s on city: %q", id, got)
		}
	}
}

// ownCounter returns the last counter at which d's instance wrote the
// record id, 0 if none.
func (d *device) ownCounter(id string) int64 {
	d.t.Helper()
	var c int64
	d.app.QueryRow(`SELECT coalesce(max(counter), 0) FROM morango_recordmaxcounter WHERE store_model_id = ? AND instance_id = ?`, id, d.instance()).Scan(&c)
	return c
}

// A row the app touches without changing its data makes no version, on
// the device that wrote it and on one that received it, whatever its
// numbers: an infinite REAL included, which json_object and json_set spell
// differently (9.0e+999, 9e999). Such a version would compete with the
// other devices' real edits of the row. The app rows verify.
func TestTouchedRowMakesNoVersion(t *testing.T) {
	dir := t.TempDir()
	fac, city := valueDevices(t)
	var rows []string
	for _, v := range []any{math.Inf(1), math.Inf(-1), 0.1 + 0.2, 1e-300, math.MaxFloat64, 5e-324, 1e20, int64(math.MaxInt64), int64(math.MinInt64), int64(1<<53 + 1), "a\x00b", "{\"a\":1}", ""} {
		id := ids.Random()
		rows = append(rows, id)
		fac.exec(`INSERT INTO note VALUES (?, ?, 'n', ?)`, id, fac.cert, v)
	}
	fac.sendTo(city, dir, false)
	verify := func(d *device) {
		t.Helper()
		res, err := store.Verify(t.Context(), d.path, func(p store.VerifyProblem) error {
			t.Errorf("%s: verify: %+v", d.name, p)
			return nil
		})
		if err != nil || !res.OK() {
			t.Errorf("%s: verify: %+v %v", d.name, res, err)
		}
	}
	for _, d := range []*device{fac, city} {
		verify(d)
		before := map[string]int64{}
		for _, id := range rows {
			before[id] = d.ownCounter(id)
		}
		d.exec(`UPDATE note SET body = body, title = title`)
		if _, err := d.db.Serialize(t.Context()); err != nil {
			t.Fatal(err)
		}
		for _, id := range rows {
			if c := d.ownCounter(id); c != before[id] {
				t.Errorf("%s: touching note %s (%s) made a version", d.name, id, d.noteValue(id))
			}
		}
		verify(d)
	}
	for _, id := range rows {
		if a, b := fac.noteValue(id), city.noteValue(id); a != b {
			t.Errorf("note %s: facility %s, city %s", id, a, b)
		}
	}
}

// A row whose data is larger than a bundle can carry in one record waits,
// with a reason, and the other rows still reach the other devices: such a
// record failed every export. Data just under the bound travels.
func TestOversizedRowWaitsAlone(t *testing.T) {
	dir := t.TempDir()
	fac, city := valueDevices(t)
	big, edited, plain, large := ids.Random(), ids.Random(), ids.Random(), ids.Random()
	fac.exec(`INSERT INTO note VALUES (?, ?, 'edited', 'small')`, edited, fac.cert)
	fac.exec(`INSERT INTO note VALUES (?, ?, 'plain', 'small')`, plain, fac.cert)
	fac.sendTo(city, dir, false)

	fac.exec(`INSERT INTO note VALUES (?, ?, 'big', ?)`, big, fac.cert, strings.Repeat("x", 17<<20))
	fac.exec(`UPDATE note SET body = ? WHERE id = ?`, strings.Repeat("\x01", 3<<20), edited) // 18 MiB as JSON (\u0001)
	fac.exec(`INSERT INTO note VALUES (?, ?, 'large', ?)`, large, fac.cert, strings.Repeat("y", 12<<20))
	fac.exec(`UPDATE note SET body = 'changed' WHERE id = ?`, plain)
	fac.sendTo(city, dir, false)
	if got := city.noteValue(plain); got != "text 'changed'" {
		t.Errorf("city's plain note: %q", got)
	}
	var n int
	city.app.QueryRow(`SELECT length(body) FROM note WHERE id = ?`, large).Scan(&n)
	if n != 12<<20 {
		t.Errorf("city's large note has %d characters, want %d", n, 12<<20)
	}
	for _, id := range []string{big, edited} {
		if e := fac.serializeError(id); !strings.Contains(e, "MiB") {
			t.Errorf("facility's note %s waits with %q, want a reason giving the bound", id, e)
		}
	}
	if got := city.noteValue(edited); got != "text 'small'" {
		t.Errorf("city's edited note: %q, want the version before", got)
	}
	if got := city.noteValue(big); got != "" {
		t.Errorf("city got the big note")
	}
}

// A synced column whose name holds a backslash (or a quote) carries its
// values both ways, first sync and edits: JSON paths read a backslash in
// a key as the start of an escape.
func TestColumnNameWithBackslash(t *testing.T) {
	const schema = `CREATE TABLE odd (id TEXT PRIMARY KEY, dataset_id TEXT NOT NULL, "a\b" TEXT, "c""d" TEXT, "e\\""f" TEXT);`
	const models = `{"name": "odd", "table": "odd", "partition": "${dataset_id}"},`
	dir := t.TempDir()
	fac := newAppDevice(t, "facility", schema, models)
	fac.root()
	seedFacility(fac)
	city := newAppDevice(t, "city", schema, models)
	grant(t, fac, city, "full-facility", map[string]string{"dataset_id": fac.cert})
	id := ids.Random()
	fac.exec(`INSERT INTO odd VALUES (?, ?, 'one', 'two', 'three')`, id, fac.cert)
	fac.sendTo(city, dir, false)
	row := func(d *device) string {
		var v string
		d.app.QueryRow(`SELECT quote("a\b") || ' ' || quote("c""d") || ' ' || quote("e\\""f") FROM odd WHERE id = ?`, id).Scan(&v)
		return v
	}
	if got := row(city); got != "'one' 'two' 'three'" {
		t.Errorf("city after the first sync: %s", got)
	}
	city.exec(`UPDATE odd SET "a\b" = 'uno', "c""d" = 'dos', "e\\""f" = 'tres'`)
	city.sendTo(fac, dir, false)
	if got := row(fac); got != "'uno' 'dos' 'tres'" {
		t.Errorf("facility after city's edit: %s", got)
	}
	for _, d := range []*device{fac, city} {
		var data map[string]string
		if err := json.Unmarshal([]byte(d.record(id).Serialized), &data); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"id": id, "dataset_id": fac.cert, `a\b`: "uno", `c"d`: "dos", `e\\"f`: "tres"}
		if !maps.Equal(data, want) {
			t.Errorf("%s's record: %q, want %q", d.name, data, want)
		}
	}
}
