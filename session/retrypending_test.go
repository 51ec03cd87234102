package session

import (
	"testing"

	"github.com/morango-sync/morango/ids"
)

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
	visit := func(d *device) *ExchangeResult {
		t.Helper()
		r, err := Exchange(t.Context(), d.db, stick, ExchangeOptions{CertID: d.cert, Name: d.name})
		if err != nil {
			t.Fatalf("%s: exchange: %v", d.name, err)
		}
		return r
	}
	visit(city) // its manifest
	visit(fac)  // a bundle for city
	if r := visit(city); r.Retried != nil {
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
