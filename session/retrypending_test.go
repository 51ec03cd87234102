package session

import (
	"testing"

	"github.com/morango-sync/morango/ids"
	"github.com/morango-sync/morango/store"
)

// exchanger returns a function that runs an exchange of a device with
// stick, failing the test on an error.
func exchanger(t *testing.T, stick string) func(d *device) *ExchangeResult {
	return func(d *device) *ExchangeResult {
		t.Helper()
		r, err := Exchange(t.Context(), d.db, stick, ExchangeOptions{CertID: d.cert, Name: d.name})
		if err != nil {
			t.Fatalf("%s: exchange: %v", d.name, err)
		}
		return r
	}
}

// A row the app refused waits, pending. Once the app's own row that stood
// in its way changes, the next exchange writes it, even when no bundle
// brings anything new; an exchange with nothing waiting writes nothing.
func TestExchangeRetriesPending(t *testing.T) {
	stick := t.TempDir()
	fac := newAppDevice(t, "facility", "", "")
	fac.root()
	f := seedFacility(fac)
	city := newAppDevice(t, "city", `CREATE UNIQUE INDEX facilityuser_username ON facilityuser (username);`, "")
	grant(t, fac, city, "full-facility", map[string]string{"dataset_id": f.dataset})
	visit := exchanger(t, stick)
	visit(city) // its manifest
	visit(fac)  // a bundle for city
	visit(city)
	if r := visit(city); r.Retried != nil { // nothing to import, nothing waits
		t.Errorf("nothing waited, but the exchange retried: %+v", r.Retried)
	}

	// Both devices add a user named dan; city's app refuses the other.
	cityDan, facDan := ids.Random(), ids.Random()
	city.exec(`INSERT INTO facilityuser (id, dataset_id, username) VALUES (?, ?, 'dan')`, cityDan, f.dataset)
	fac.exec(`INSERT INTO facilityuser (id, dataset_id, username) VALUES (?, ?, 'dan')`, facDan, f.dataset)
	visit(fac)
	visit(city)
	pending := func() int {
		return city.count(`SELECT count(*) FROM morango_store WHERE dirty_bit AND id = ?`, facDan)
	}
	if pending() != 1 || city.count(`SELECT count(*) FROM facilityuser WHERE id = ?`, facDan) != 0 {
		t.Fatal("the second dan is not waiting on city")
	}
	if r := visit(city); r.Retried == nil || r.Retried.Written != 0 || r.Retried.Pending != 1 {
		t.Errorf("retried %+v, want nothing written and one row still pending", r.Retried)
	}

	// City's user takes another name: no bundle comes, the row goes in.
	city.exec(`UPDATE facilityuser SET username = 'dan.c' WHERE id = ?`, cityDan)
	r := visit(city)
	for _, fr := range r.Files {
		if fr.Action == "imported" {
			t.Fatalf("%s was imported: the retry must happen without one", fr.File)
		}
	}
	if r.Retried == nil || r.Retried.Written != 1 || r.Retried.Pending != 0 {
		t.Errorf("retried %+v, want one row written and none pending", r.Retried)
	}
	if pending() != 0 || city.count(`SELECT count(*) FROM facilityuser WHERE id = ? AND username = 'dan'`, facDan) != 1 {
		t.Error("the second dan is still not in city's app")
	}
	// The rename went out with the exchange: the two devices agree.
	visit(fac)
	if n := fac.count(`SELECT count(*) FROM facilityuser WHERE id = ? AND username = 'dan.c'`, cityDan); n != 1 {
		t.Error("city's rename has not reached the facility")
	}
}

// A retry that fails (the app's trigger, asked to delete a waiting log
// whose learner was deleted, rolls the whole transaction back) is
// reported, and the exchange goes on: the device's manifest and bundles
// still go out.
func TestFailingRetryLetsExchangeGoOn(t *testing.T) {
	stick := t.TempDir()
	visit := exchanger(t, stick)
	fac := newAppDevice(t, "facility", "", "")
	fac.root()
	f := seedFacility(fac)
	city := newAppDevice(t, "city", `
CREATE TRIGGER contentlog_kept BEFORE DELETE ON contentlog BEGIN SELECT RAISE(ROLLBACK, 'content logs are kept'); END;
CREATE TRIGGER contentlog_fixed BEFORE UPDATE ON contentlog WHEN NEW.content_id <> OLD.content_id
	BEGIN SELECT RAISE(ABORT, 'a log keeps its content'); END;`, "")
	grant(t, fac, city, "full-facility", map[string]string{"dataset_id": f.dataset})
	visit(city)
	visit(fac)
	visit(city)
	fac.exec(`UPDATE contentlog SET content_id = 'c2' WHERE id = ?`, f.learnerLog)
	visit(fac)
	visit(city)
	if city.count(`SELECT count(*) FROM morango_store WHERE dirty_bit AND id = ?`, f.learnerLog) != 1 {
		t.Fatal("the learner's log is not waiting on city")
	}

	city.exec(`DELETE FROM facilityuser WHERE id = ?`, f.learner)
	note := ids.Random()
	city.exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES (?, ?, 'inspection')`, note, f.dataset)
	r := visit(city)
	if r.RetryError == "" || r.Failed != 1 || r.Retried != nil {
		t.Errorf("retry error %q, %d failed, retried %+v: want the failed retry reported", r.RetryError, r.Failed, r.Retried)
	}
	visit(fac)
	if fac.count(`SELECT count(*) FROM adminnote WHERE id = ?`, note) != 1 {
		t.Error("city's note has not reached the facility: the exchange stopped at the retry")
	}
}

// The retry serializes many local changes in transactions of
// SerializeChunk rows, each with its counter, as an import does, so that
// the app never waits long for the write lock.
func TestRetrySerializesInChunks(t *testing.T) {
	saved := store.SerializeChunk
	t.Cleanup(func() { store.SerializeChunk = saved })
	stick := t.TempDir()
	visit := exchanger(t, stick)
	fac := newAppDevice(t, "facility", "", "")
	fac.root()
	f := seedFacility(fac)
	city := newAppDevice(t, "city", `CREATE UNIQUE INDEX facilityuser_username ON facilityuser (username);`, "")
	grant(t, fac, city, "full-facility", map[string]string{"dataset_id": f.dataset})
	visit(city)
	visit(fac)
	visit(city)
	city.exec(`INSERT INTO facilityuser (id, dataset_id, username) VALUES (?, ?, 'dan')`, ids.Random(), f.dataset)
	fac.exec(`INSERT INTO facilityuser (id, dataset_id, username) VALUES (?, ?, 'dan')`, ids.Random(), f.dataset)
	visit(fac)
	visit(city)

	store.SerializeChunk = 3
	var notes []any
	for range 10 {
		id := ids.Random()
		notes = append(notes, id)
		city.exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES (?, ?, 'note')`, id, f.dataset)
	}
	if r := visit(city); r.Retried == nil {
		t.Fatal("no retry")
	}
	n := city.count(`SELECT count(DISTINCT last_saved_counter) FROM morango_store WHERE id IN (?,?,?,?,?,?,?,?,?,?)`, notes...)
	if n < 4 {
		t.Errorf("the 10 changed rows were serialized in %d transaction(s), want 4 or more of at most 3 rows", n)
	}
}
