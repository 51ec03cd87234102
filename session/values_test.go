package session

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/morango-sync/morango/ids"
)

const (
	valueTable = `CREATE TABLE note (id TEXT PRIMARY KEY, dataset_id TEXT NOT NULL, title TEXT, body TEXT);`
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
