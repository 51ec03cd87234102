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
			fac, city, f := facilityAnd(t, "city")
			visit := func(d *device, db *store.DB) *ExchangeResult {
				t.Helper()
				r, err := Exchange(t.Context(), db, stick, ExchangeOptions{CertID: d.cert})
				if err != nil {
					t.Fatalf("%s: %v", d.name, err)
				}
				return r
			}
			visit(fac, fac.db)
			visit(city, city.db)
			visit(fac, fac.db)
			visit(city, city.db)

			backup := filepath.Join(t.TempDir(), "backup.sqlite3")
			if _, err := fac.app.Exec(`VACUUM INTO ?`, backup); err != nil {
				t.Fatal(err)
			}
			// The week after the backup: work that reaches the city.
			for i := range 5 {
				fac.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, ?, 0.5)`,
					ids.Random(), f.dataset, f.learner, "week-"+string(rune('a'+i)))
				visit(fac, fac.db)
				visit(city, city.db)
			}
			old := fac.instance()

			// The disk fails; the backup is restored where the database was.
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
				t.Fatalf("the restored file opened as instance %s, want its former %s until it learns it is older", id[:8], old[:8])
			}
			app, err := sql.Open("sqlite", fac.path+"?_pragma=busy_timeout(10000)")
			if err != nil {
				t.Fatal(err)
			}
			defer app.Close()

			// New work after the restore.
			fresh := ids.Random()
			if _, err := app.Exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, 'after-restore', 0.9)`,
				fresh, f.dataset, f.learner); err != nil {
				t.Fatal(err)
			}
			switch first {
			case "exchange":
				r := visit(fac, db)
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
				visit(fac, db)
				visit(city, city.db)
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
