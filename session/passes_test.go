package session

import (
	"database/sql/driver"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/morango-sync/morango/ids"
	"modernc.org/sqlite"
)

var (
	rowAttempts      atomic.Int64
	registerAttempts sync.Once
	registerErr      error
)

// City gets, in one batch, k renames of users under a unique index, each
// taking the old name of the user after it in City's store order (so only
// the last can be written first), and r renames the app refuses for good.
// Writing the rows one by one must write the chain in a few tries per row,
// not a pass per row of the chain each retrying every row still refused
// (about k²/2 + k·r tries); the r wait, with the app's reason. Every
// attempt to update an app row is counted by a trigger.
func TestRefusedRowsTriedBoundedly(t *testing.T) {
	registerAttempts.Do(func() {
		registerErr = sqlite.RegisterScalarFunction("test_row_attempt", 0, func(*sqlite.FunctionContext, []driver.Value) (driver.Value, error) {
			rowAttempts.Add(1)
			return int64(0), nil
		})
	})
	if registerErr != nil {
		t.Fatal(registerErr)
	}
	const k, r = 150, 150
	const cityApp = `CREATE UNIQUE INDEX facilityuser_username ON facilityuser (username);
CREATE TRIGGER count_attempts BEFORE UPDATE ON facilityuser BEGIN
	SELECT test_row_attempt();
	SELECT RAISE(ABORT, 'refused name') WHERE NEW.username LIKE 'bad%';
END;`
	dir := t.TempDir()
	send := func(from, to *device) { from.sendTo(to, dir, false) }
	fac := newAppDevice(t, "facility", "", "")
	fac.root()
	city := newAppDevice(t, "city", cityApp, "")
	grant(t, fac, city, "full-facility", map[string]string{"dataset_id": fac.cert})
	f := seedFacility(fac)
	var chain, bad []string
	for i := range k + r {
		id := ids.Random()
		fac.exec(`INSERT INTO facilityuser (id, dataset_id, username) VALUES (?, ?, ?)`, id, f.dataset, fmt.Sprintf("u%04d", i))
		if i < k {
			chain = append(chain, id)
		} else {
			bad = append(bad, id)
		}
	}
	send(fac, city)
	// The chain in City's store order.
	rows, err := city.app.Query(`SELECT id FROM morango_store WHERE model_name = 'facilityuser' ORDER BY rowid`)
	if err != nil {
		t.Fatal(err)
	}
	inChain := map[string]bool{}
	for _, id := range chain {
		inChain[id] = true
	}
	chain = chain[:0]
	for rows.Next() {
		var id string
		rows.Scan(&id)
		if inChain[id] {
			chain = append(chain, id)
		}
	}
	rows.Close()
	name := func(id string) string {
		var s string
		if err := fac.app.QueryRow(`SELECT username FROM facilityuser WHERE id = ?`, id).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	old := make([]string, k)
	for i, id := range chain {
		old[i] = name(id)
	}
	// Last first, so that Facility's app never holds a name twice.
	fac.exec(`UPDATE facilityuser SET username = 'fresh' WHERE id = ?`, chain[k-1])
	for i := k - 2; i >= 0; i-- {
		fac.exec(`UPDATE facilityuser SET username = ? WHERE id = ?`, old[i+1], chain[i])
	}
	for i, id := range bad {
		fac.exec(`UPDATE facilityuser SET username = ? WHERE id = ?`, fmt.Sprintf("bad%04d", i), id)
	}

	rowAttempts.Store(0)
	send(fac, city)
	got := rowAttempts.Load()
	t.Logf("%d renames (%d in the chain, %d refused for good): %d attempts to update a row", k+r, k, r, got)
	if c := city.count(`SELECT count(*) FROM facilityuser WHERE username = 'fresh'`); c != 1 {
		t.Fatalf("the chain was not written")
	}
	if limit := int64(4 * (k + r)); got > limit {
		t.Fatalf("%d attempts for %d rows (more than %d)", got, k+r, limit)
	}
	if c := city.count(`SELECT count(*) FROM morango_store WHERE dirty_bit AND deserialization_error LIKE '%refused name%'`); c != r {
		t.Fatalf("%d records wait with the app's reason, want %d", c, r)
	}
	for i, id := range chain[:k-1] {
		if c := city.count(`SELECT count(*) FROM facilityuser WHERE id = ? AND username = ?`, id, old[i+1]); c != 1 {
			t.Fatalf("user %d of the chain does not have its new name", i)
		}
	}
}
