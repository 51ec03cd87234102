package session

import (
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	"github.com/morango-sync/morango/ids"
	"github.com/morango-sync/morango/store"
)

// A school laptop's disk fails and its owner restores last week's backup
// of the database to the same path on the same machine. Since the backup,
// the laptop had sent the city its versions up to some counter, and the
// restored file's counter is behind: had it kept its instance, the rows the
// school records after the restore would be versions (instance, counter)
// the city already claims to hold, and no exchange would send them, while
// the city would never send back what the laptop lost. The first peer
// counters it sees (a manifest at an exchange, a bundle's at an import, a
// manifest at an export) show it the city holds more of it than it has:
// before serializing anything it takes a new instance, its former
// manifest on the stick is retired, the new work reaches the city, and
// the week it lost comes back.
func TestRestoredBackupStillSyncs(t *testing.T) {
	for _, first := range []string{"exchange", "import", "export"} {
		t.Run(first, func(t *testing.T) {
			stick := t.TempDir()
			fac, city, f, db, app, old := restoredFacility(t, stick, nil)
			// New work after the restore.
			fresh := ids.Random()
			if _, err := app.Exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, 'after-restore', 0.9)`,
				fresh, f.dataset, f.learner); err != nil {
				t.Fatal(err)
			}
			switch first {
			case "exchange":
				r := visitStick(t, stick, fac, db)
				if r.Renewed != old {
					t.Errorf("the exchange does not report the renewal: %+v", r)
				}
				retired := false
				for _, fr := range r.Files {
					retired = retired || fr.Action == "retired" && fr.Peer == old
				}
				if !retired {
					t.Errorf("the former instance's manifest was not retired")
				}
			case "import":
				b := filepath.Join(t.TempDir(), "city.bundle")
				city.export(b, "")
				if _, err := Import(t.Context(), db, &DiskConnection{Bundle: b}, ImportOptions{}); err != nil {
					t.Fatal(err)
				}
			case "export":
				m := filepath.Join(t.TempDir(), "city.manifest")
				city.manifest(m)
				if _, err := Export(t.Context(), db, &DiskConnection{Bundle: filepath.Join(t.TempDir(), "x.bundle"), Manifest: m},
					ExportOptions{CertID: fac.cert}); err != nil {
					t.Fatal(err)
				}
			}
			in, err := db.Instance(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if in.ID == old {
				t.Fatalf("after its first %s the restored database still syncs as %s", first, old[:8])
			}
			if n := count(t, app, `SELECT count(*) FROM morango_store WHERE last_saved_instance = ? AND id = ?`, old, fresh); n != 0 {
				t.Errorf("the work after the restore was serialized under the former instance")
			}
			for range 3 {
				visitStick(t, stick, fac, db)
				visitStick(t, stick, city, city.db)
			}
			if n := city.count(`SELECT count(*) FROM contentlog WHERE id = ?`, fresh); n != 1 {
				t.Errorf("city: the log the school recorded after restoring its backup never arrived")
			}
			if n := count(t, app, `SELECT count(*) FROM contentlog WHERE content_id LIKE 'week-%'`); n != 5 {
				t.Errorf("facility: %d of the 5 logs of the week before the failure came back from the city", n)
			}
		})
	}
}

func count(t *testing.T, db *sql.DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// restoredFacility sets a restore up: the facility and the city exchange,
// the facility is backed up, records a week of logs that reach the city,
// and before it fails hook runs (with the facility's pre-failure
// database). Then the backup is restored at the
// facility's path and opened. It returns the devices, the restored store,
// an app connection to it and the facility's former instance.
func restoredFacility(t *testing.T, stick string, hook func(fac, city *device)) (fac, city *device, f facilityData, db *store.DB, app *sql.DB, old string) {
	return restoredFacilityWeek(t, stick, true, hook)
}

// restoredFacilityWeek is restoredFacility; the city visits the stick in the
// week before the failure only if cityThisWeek.
func restoredFacilityWeek(t *testing.T, stick string, cityThisWeek bool, hook func(fac, city *device)) (fac, city *device, f facilityData, db *store.DB, app *sql.DB, old string) {
	t.Helper()
	fac, city, f = facilityAnd(t, "city")
	for range 2 {
		visitStick(t, stick, fac, fac.db)
		visitStick(t, stick, city, city.db)
	}
	backup := filepath.Join(t.TempDir(), "backup.sqlite3")
	if _, err := fac.app.Exec(`VACUUM INTO ?`, backup); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		fac.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, ?, 0.5)`,
			ids.Random(), f.dataset, f.learner, "week-"+string(rune('a'+i)))
		visitStick(t, stick, fac, fac.db)
		if cityThisWeek {
			visitStick(t, stick, city, city.db)
		}
	}
	old = fac.instance()
	if hook != nil {
		hook(fac, city)
	}
	db, app = restore(t, fac, backup, old)
	return fac, city, f, db, app, old
}

func visitStick(t *testing.T, stick string, d *device, db *store.DB) *ExchangeResult {
	t.Helper()
	r, err := Exchange(t.Context(), db, stick, ExchangeOptions{CertID: d.cert})
	if err != nil {
		t.Fatalf("%s: %v", d.name, err)
	}
	return r
}

// The restored facility's first contact is a direct import ('morango
// import') of the bundle the city wrote for it before the failure, from
// the facility's manifest then: it holds everything but what the facility
// already had then. The import renews the instance before it serializes;
// had it then claimed the bundle's counters as addressed to this device,
// those of the former instance would cover the lost week, and no exchange
// would send it back. It is imported as a bundle for another device.
func TestRestoredImportOfBundleForFormerInstanceDoesNotClaimLostWeek(t *testing.T) {
	stick := t.TempDir()
	b := filepath.Join(t.TempDir(), "city-to-facility.bundle")
	fac, city, _, db, app, old := restoredFacility(t, stick, func(fac, city *device) {
		m := filepath.Join(t.TempDir(), "facility.manifest")
		fac.manifest(m) // the facility's holdings before the failure
		city.exec(`UPDATE classroom SET name = 'Class 5'`)
		city.export(b, m)
	})
	r, err := Import(t.Context(), db, &DiskConnection{Bundle: b}, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	in, err := db.Instance(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if in.ID == old {
		t.Fatalf("the import did not renew the restored database")
	}
	if r.ForOther == "" {
		t.Errorf("the bundle addressed to the former instance %s was imported as addressed to this device (%s); claims: %v",
			old[:8], in.ID[:8], r.Store.Claims)
	}
	for range 3 {
		visitStick(t, stick, fac, db)
		visitStick(t, stick, city, city.db)
	}
	if n := count(t, app, `SELECT count(*) FROM contentlog WHERE content_id LIKE 'week-%'`); n != 5 {
		t.Errorf("facility: %d of the 5 logs of the week before the failure came back from the city", n)
	}
}

// Two handles on the restored file, as two processes have (a 'morango
// serialize' run by the app while 'morango exchange' runs): the exchange
// renews the instance, and the other handle, which read the instance when
// it opened, writes its next versions under the new one too, never under
// an instance that is no longer current.
func TestRenewalSeenByOtherHandleOfSameFile(t *testing.T) {
	stick := t.TempDir()
	fac, city, f, db, app, old := restoredFacility(t, stick, nil)
	other, id := openAt(t, fac.path, &store.Options{SystemID: "sys-facility", NodeID: "node-facility"})
	if id != old {
		t.Fatalf("second handle opened as %s", id[:8])
	}
	if r := visitStick(t, stick, fac, db); r.Renewed != old {
		t.Fatalf("the exchange did not renew: %+v", r)
	}
	fresh := ids.Random()
	if _, err := app.Exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, 'after-restore', 0.9)`,
		fresh, f.dataset, f.learner); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Serialize(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := count(t, app, `SELECT count(*) FROM morango_store WHERE last_saved_instance = ? AND id = ?`, old, fresh); n != 0 {
		t.Errorf("the other handle serialized the work after the renewal under the former instance %s", old[:8])
	}
	for range 3 {
		visitStick(t, stick, fac, db)
		visitStick(t, stick, city, city.db)
	}
	if n := city.count(`SELECT count(*) FROM contentlog WHERE id = ?`, fresh); n != 1 {
		t.Errorf("city: the log recorded after the restore never arrived")
	}
	if n := count(t, app, `SELECT count(*) FROM contentlog WHERE content_id LIKE 'week-%'`); n != 5 {
		t.Errorf("facility: %d of the 5 logs of the week before the failure came back", n)
	}
}

// restore puts the backup in place of fac's database, as after a disk
// failure, and opens it: its store (which must still be instance old) and
// an app connection.
func restore(t *testing.T, fac *device, backup, old string) (*store.DB, *sql.DB) {
	t.Helper()
	if err := fac.db.Close(); err != nil {
		t.Fatal(err)
	}
	fac.app.Close()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(fac.path + suffix)
	}
	data, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fac.path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	db, id := openAt(t, fac.path, &store.Options{SystemID: "sys-facility", NodeID: "node-facility"})
	if id != old {
		t.Fatalf("restored file opened as %s, want %s", id[:8], old[:8])
	}
	app, err := sql.Open("sqlite", fac.path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	return db, app
}
