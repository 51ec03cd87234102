package session

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/morango-sync/morango/bundle"
	"github.com/morango-sync/morango/certs"
	"github.com/morango-sync/morango/ids"
	"github.com/morango-sync/morango/store"
)

// TestExchange carries one folder, standing in for a USB stick, between
// three devices: Facility (the root), a City laptop (full-facility) and a
// learner's Home tablet (single-user). Each visit runs Exchange; the apps
// keep working between visits. When a whole round moves nothing, City and
// Facility hold identical data, Home holds exactly what it may read, and
// the learner's work has reached both.
func TestExchange(t *testing.T) {
	stick := t.TempDir()
	fac, city, f := facilityAnd(t, "city")
	home := newDevice(t, "home")
	grant(t, fac, home, "single-user", map[string]string{"dataset_id": f.dataset, "user_id": f.learner})
	devices := []*device{fac, home, city}

	// visit runs one exchange and returns the files it imported or
	// exported.
	visit := func(d *device) (moved []string) {
		t.Helper()
		r, err := Exchange(t.Context(), d.db, stick, ExchangeOptions{CertID: d.cert, Name: d.name})
		if err != nil {
			t.Fatalf("%s: exchange: %v", d.name, err)
		}
		for _, fr := range r.Files {
			switch fr.Action {
			case "failed":
				t.Errorf("%s: %s failed: %s", d.name, fr.File, fr.Reason)
			case "imported":
				if fr.Import.Store.Refused != 0 {
					t.Errorf("%s: %s: refused %+v", d.name, fr.File, fr.Import.Store.Refusals)
				}
				moved = append(moved, fmt.Sprintf("%s imported %s (%d)", d.name, fr.File, fr.Records))
			case "exported":
				moved = append(moved, fmt.Sprintf("%s exported %s (%d)", d.name, fr.File, fr.Records))
			}
		}
		return moved
	}
	round := func() []string {
		var moved []string
		for _, d := range devices {
			moved = append(moved, visit(d)...)
		}
		return moved
	}

	// Round 1 introduces everyone (manifests); round 2 carries the
	// facility's data.
	round()
	round()
	if n := home.count(`SELECT count(*) FROM contentlog WHERE id = ?`, f.learnerLog); n != 1 {
		t.Fatalf("the learner's log has not reached home after two rounds")
	}
	if n := city.count(`SELECT count(*) FROM adminnote WHERE id = ?`, f.note); n != 1 {
		t.Fatalf("the admin note has not reached city after two rounds")
	}

	// Everyone works.
	homeLogs := []string{ids.Random(), ids.Random()}
	home.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, 'c7', 0.2)`, homeLogs[0], f.dataset, f.learner)
	home.exec(`UPDATE contentlog SET progress = 0.4 WHERE id = ?`, f.learnerLog)
	fac.exec(`UPDATE contentlog SET progress = 0.3 WHERE id = ?`, f.learnerLog) // concurrent with home's edit
	fac.exec(`UPDATE classroom SET name = 'Class 4B' WHERE id = ?`, f.classroom)
	cityNote := ids.Random()
	city.exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES (?, ?, 'inspection')`, cityNote, f.dataset)
	city.exec(`UPDATE contentlog SET progress = 1.0 WHERE id = ?`, f.otherLog)
	round()

	// And again, between visits.
	visit(fac)
	home.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, 'c8', 0.9)`, homeLogs[1], f.dataset, f.learner)
	visit(home)
	fac.exec(`DELETE FROM contentlog WHERE id = ?`, f.otherLog)
	city.exec(`UPDATE facilityuser SET full_name = 'Ana Lima' WHERE id = ?`, f.learner)
	visit(city)

	var last []string
	rounds := 0
	for ; rounds < 8; rounds++ {
		if last = round(); len(last) == 0 {
			break
		}
		t.Logf("round %d:\n%s", rounds+1, strings.Join(last, "\n"))
	}
	if len(last) != 0 {
		t.Fatalf("no quiet round after 8 rounds; the last moved:\n%s", strings.Join(last, "\n"))
	}

	// City and Facility hold identical facility data.
	if d := diffStates(fac.syncState(), city.syncState()); d != "" {
		t.Fatalf("facility and city differ:\n%s", d)
	}
	for _, d := range devices {
		if n := d.count(`SELECT count(*) FROM morango_store WHERE dirty_bit OR deserialization_error != ''`); n != 0 {
			t.Errorf("%s: %d records not written to the app", d.name, n)
		}
	}
	// The learner's logs reached both.
	for _, d := range []*device{fac, city} {
		for _, id := range homeLogs {
			if n := d.count(`SELECT count(*) FROM contentlog WHERE id = ?`, id); n != 1 {
				t.Errorf("%s lacks the learner's log %s", d.name, id)
			}
		}
		if n := d.count(`SELECT count(*) FROM adminnote WHERE id = ?`, cityNote); n != 1 {
			t.Errorf("%s lacks city's note", d.name)
		}
		if n := d.count(`SELECT count(*) FROM facilityuser WHERE full_name = 'Ana Lima'`); n != 1 {
			t.Errorf("%s lacks city's edit of the learner", d.name)
		}
	}
	// The concurrent edits of the learner's log are one conflict, the same
	// on every device.
	rec := fac.record(f.learnerLog)
	if rec.Conflicting == "" {
		t.Errorf("the concurrent edits left no conflict: %+v", rec)
	}
	for _, d := range []*device{city, home} {
		if r := d.record(f.learnerLog); *r != *rec {
			t.Errorf("%s holds the learner's log as %+v, facility as %+v", d.name, r, rec)
		}
	}

	// Home holds what it may read, exactly as Facility holds it, and
	// nothing else.
	read := f.learnerScope()
	for _, p := range home.partitions() {
		if !read.Contains(p) {
			t.Errorf("home holds partition %s", p)
		}
	}
	readable := func(d *device) map[string][]string {
		st := d.syncState()
		out := map[string][]string{}
		for _, row := range st["morango_store"] {
			for _, p := range read {
				if strings.Contains(row, " | '"+p) {
					out["morango_store"] = append(out["morango_store"], row)
					break
				}
			}
		}
		return out
	}
	if d := diffStates(readable(fac), readable(home)); d != "" {
		t.Errorf("home's records differ from facility's:\n%s", d)
	}
	for q, want := range map[string]int{
		`SELECT count(*) FROM facilitydataset`:                                 1,
		`SELECT count(*) FROM facilityuser`:                                    1,
		`SELECT count(*) FROM facilityuser WHERE full_name = 'Ana Lima'`:       1,
		`SELECT count(*) FROM classroom WHERE name = 'Class 4B'`:               1,
		`SELECT count(*) FROM contentlog`:                                      3,
		`SELECT count(*) FROM contentlog WHERE user_id != '` + f.learner + `'`: 0,
		`SELECT count(*) FROM adminnote`:                                       0,
	} {
		if n := home.count(q); n != want {
			t.Errorf("home: %s = %d, want %d", q, n, want)
		}
	}
	// The app rows Home holds are Facility's.
	facApp, homeApp := dump(t, fac.app, appTables), dump(t, home.app, appTables)
	for tb, rows := range homeApp {
		for _, row := range rows {
			if !slices.Contains(facApp[tb], row) {
				t.Errorf("home's %s row is not facility's: %s", tb, row)
			}
		}
	}
}

// A peer that lacks nothing gets no bundle: exchange says it is up to
// date, and says it removed a bundle only when one to that peer was there.
func TestExchangeUpToDate(t *testing.T) {
	stick := t.TempDir()
	fac, city, _ := facilityAnd(t, "city")
	actions := func(d *device) map[string]string {
		t.Helper()
		r, err := Exchange(t.Context(), d.db, stick, ExchangeOptions{CertID: d.cert})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, fr := range r.Files {
			if fr.Peer != "" {
				got[fr.Peer] = fr.Action
			}
		}
		return got
	}
	cityID, err := city.db.Instance(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	actions(city) // city's manifest
	if a := actions(fac)[cityID.ID]; a != "exported" {
		t.Fatalf("facility to city: %q, want exported", a)
	}
	actions(city) // imports it; its manifest now says it has everything
	if a := actions(fac)[cityID.ID]; a != "removed" {
		t.Errorf("facility to city, with the applied bundle on the stick: %q, want removed", a)
	}
	if a := actions(fac)[cityID.ID]; a != "up to date" {
		t.Errorf("facility to city, with no bundle on the stick: %q, want up to date", a)
	}
}

// A database moved to another folder of the same machine syncs as a new
// device (its instance id changes). Its old identity's manifest would stay
// on the stick, and every device would go on writing bundles for it at
// every visit: the moved database's first exchange retires it, and the
// bundles to it. A copy whose original is still in place retires nothing.
func TestMovedDatabaseRetiresItsOldIdentity(t *testing.T) {
	stick := t.TempDir()
	fac, home, f := facilityAnd(t, "home")
	visit := func(d *device) *ExchangeResult {
		t.Helper()
		r, err := Exchange(t.Context(), d.db, stick, ExchangeOptions{CertID: d.cert})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	old, err := home.db.Instance(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	visit(home)
	visit(fac) // a bundle for home's old identity
	fac.exec(`UPDATE classroom SET name = 'Class 9' WHERE id = ?`, f.classroom)
	visit(fac)

	// A copy elsewhere, the original still in place: nothing is retired.
	copyPath := filepath.Join(t.TempDir(), "copy.sqlite3")
	if _, err := home.app.Exec(`VACUUM INTO ?`, copyPath); err != nil {
		t.Fatal(err)
	}
	same := &store.Options{SystemID: "sys-home", NodeID: "node-home"} // this machine, as newDevice gives it
	cp, _ := openAt(t, copyPath, same)
	r, err := Exchange(t.Context(), cp, stick, ExchangeOptions{CertID: home.cert})
	cp.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, fr := range r.Files {
		if fr.Action == "retired" {
			t.Errorf("a copy retired %s while its original is in place", fr.File)
		}
	}

	// The move.
	if err := home.db.Close(); err != nil {
		t.Fatal(err)
	}
	home.app.Close()
	moved := filepath.Join(t.TempDir(), "home.sqlite3")
	if err := os.Rename(home.path, moved); err != nil {
		t.Fatal(err)
	}
	db, _ := openAt(t, moved, same)
	r, err = Exchange(t.Context(), db, stick, ExchangeOptions{CertID: home.cert})
	if err != nil {
		t.Fatal(err)
	}
	retired := false
	for _, fr := range r.Files {
		retired = retired || fr.Action == "retired" && fr.Peer == old.ID
	}
	if !retired {
		t.Errorf("the moved database did not retire its old identity: %+v", r.Files)
	}
	names, _ := os.ReadDir(stick)
	for _, n := range names {
		if strings.Contains(n.Name(), old.ID) {
			t.Errorf("%s is still on the stick", n.Name())
		}
	}
	r = visit(fac)
	for _, fr := range r.Files {
		if fr.Peer == old.ID {
			t.Errorf("the facility still writes for the old identity: %+v", fr)
		}
	}
	if _, err := Exchange(t.Context(), db, stick, ExchangeOptions{CertID: home.cert}); err != nil {
		t.Fatal(err)
	}
	app, err := sql.Open("sqlite", moved)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	var name string
	if err := app.QueryRow(`SELECT name FROM classroom WHERE id = ?`, f.classroom).Scan(&name); err != nil || name != "Class 9" {
		t.Errorf("the moved database lacks the facility's edit: %q %v", name, err)
	}
}

// facilityAnd makes the facility (root, seeded) and a device with a
// full-facility certificate.
func facilityAnd(t *testing.T, name string) (fac, d *device, f facilityData) {
	t.Helper()
	fac = newDevice(t, "facility")
	fac.root()
	f = seedFacility(fac)
	d = newDevice(t, name)
	grant(t, fac, d, "full-facility", map[string]string{"dataset_id": f.dataset})
	return fac, d, f
}

// openAt opens the database file at path as the store of a device with
// opts, and returns it with its instance id; it is closed at the test's
// end.
func openAt(t *testing.T, path string, opts *store.Options) (*store.DB, string) {
	t.Helper()
	db, err := store.Open(t.Context(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	in, err := db.Instance(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return db, in.ID
}

// A device that is gone is forgotten by name: its manifest and the bundles
// to it leave the stick, and nobody writes for it again; what it wrote
// stays. A name that matches nothing is refused with the devices listed.
func TestForget(t *testing.T) {
	stick := t.TempDir()
	var fac, city *device
	visit := func(d *device) *ExchangeResult {
		t.Helper()
		r, err := Exchange(t.Context(), d.db, stick, ExchangeOptions{CertID: d.cert, Name: d.name})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	fac, city, f := facilityAnd(t, "city")
	visit(city)
	visit(fac)
	city.exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES (?, ?, 'from city')`, ids.Random(), f.dataset)
	visit(city) // city writes a bundle for facility too
	cityID := city.instance()
	facID := fac.instance()

	if _, _, err := Forget(nil, stick, "tablet-9"); err == nil || !strings.Contains(hintOf(err), "(city)") {
		t.Errorf("forget of a name nobody has: %v (hint %q), want a refusal listing the devices", err, hintOf(err))
	}
	id, removed, err := Forget(nil, stick, "city")
	if err != nil || id != cityID {
		t.Fatalf("forget city: %s %v", id, err)
	}
	if !slices.Contains(removed, ManifestName(cityID)) || !slices.Contains(removed, BundleName(facID, cityID)) {
		t.Errorf("removed %v, want city's manifest and the bundle to it", removed)
	}
	if _, err := os.Stat(filepath.Join(stick, BundleName(cityID, facID))); err != nil {
		t.Errorf("the bundle city wrote is gone: %v", err)
	}
	for _, fr := range visit(fac).Files {
		if fr.Peer == cityID {
			t.Errorf("facility still writes for the forgotten city: %+v", fr)
		}
	}
	visit(city) // city was not gone after all: it is back
	if _, err := os.Stat(filepath.Join(stick, ManifestName(cityID))); err != nil {
		t.Errorf("city's manifest is not back after its exchange: %v", err)
	}
}

// A manifest written for fewer partitions than its device may read
// (morango manifest --filter) speaks for those alone: a peer exporting for
// it sends what lies under them, not the rest, of which the manifest's
// counters say nothing.
func TestExportForManifestKeepsItsFilter(t *testing.T) {
	fac, city, f := facilityAnd(t, "city")
	dir := t.TempDir()
	own := f.dataset + ":user-rw:" + f.learner
	m := filepath.Join(dir, "city.manifest")
	if _, err := WriteManifest(t.Context(), city.db, nil, m, ManifestOptions{CertID: city.cert, Filter: []string{own}}); err != nil {
		t.Fatal(err)
	}
	b := filepath.Join(dir, "fac-to-city.bundle")
	r := fac.export(b, m)
	if !certs.Filter(r.Filter).IsSubsetOf(certs.Filter{own}) {
		t.Errorf("the bundle covers %q, want only %q", r.Filter, own)
	}
	imp := city.mustImport(b)
	if imp.Store.Received == 0 {
		t.Fatalf("nothing under the learner's partition was sent")
	}
	if n := city.count(`SELECT count(*) FROM morango_store WHERE partition NOT LIKE ? || '%'`, own); n != 0 {
		t.Errorf("city received %d records outside the partitions its manifest asked for", n)
	}
}

// A bundle this device wrote, damaged on the stick (cut short), is not a
// failure of its next exchange: it is its own, and that exchange writes it
// anew, whole, for the peer to import.
func TestOwnDamagedBundleIsWrittenAnew(t *testing.T) {
	stick := t.TempDir()
	fac, city, _ := facilityAnd(t, "city")
	visit := func(d *device) *ExchangeResult { return visitStick(t, stick, d, d.db) }
	visit(city)
	visit(fac)
	b := filepath.Join(stick, BundleName(fac.instance(), city.instance()))
	data, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	if r := visit(fac); r.Failed != 0 {
		t.Errorf("the facility's own damaged bundle failed its exchange: %+v", r.Files)
	}
	if r := visit(city); r.Failed != 0 {
		t.Errorf("city: %+v", r.Files)
	}
	if d := diffStates(fac.syncState(), city.syncState()); d != "" {
		t.Errorf("after the bundle was written anew:\n%s", d)
	}
}

// The names a bundle's writer gives it, with or without the certificates'
// ids after the instances' (a device visiting with another certificate
// than its first), are its own; any other name is a rename or a copy.
func TestWrittenName(t *testing.T) {
	h := &bundle.Header{SenderInstance: "s", SenderCert: "sc", RecipientInstance: "r", RecipientCert: "rc"}
	for n, want := range map[string]bool{
		"s-to-r.bundle":        true,
		"s_sc-to-r.bundle":     true,
		"s-to-r_rc.bundle":     true,
		"s_sc-to-r_rc.bundle":  true,
		"s_xx-to-r.bundle":     false,
		"s-to-r_xx.bundle":     false,
		"s-to-r (1).bundle":    false,
		"for the city.bundle":  false,
		"s-to-r.bundle.bundle": false,
		"t-to-r.bundle":        false,
	} {
		if got := writtenName(n, h); got != want {
			t.Errorf("writtenName(%q) = %v, want %v", n, got, want)
		}
	}
}

// A bundle's name addresses it to the instance after "-to-", whether or
// not certificates' ids follow the instances' ids; other names address it
// to nobody.
func TestNamedRecipient(t *testing.T) {
	s, r, c := strings.Repeat("a", 32), strings.Repeat("b", 32), strings.Repeat("c", 32)
	for n, want := range map[string]string{
		s + "-to-" + r + ".bundle":                  r,
		s + "_" + c + "-to-" + r + ".bundle":        r,
		s + "-to-" + r + "_" + c + ".bundle":        r,
		s + "-to-anyone.bundle":                     "",
		s + "-to-" + r + " (1).bundle":              "",
		"for the city.bundle":                       "",
		s + "_" + c + "-to-" + r + "_x" + ".bundle": "",
	} {
		if got := namedRecipient(n); got != want {
			t.Errorf("namedRecipient(%q) = %q, want %q", n, got, want)
		}
	}
}
