package session

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/morango-sync/morango/store"
)

// Two machines share a system id when they were flashed from one image
// (same /etc/machine-id), when MORANGO_SYSTEM_ID is set alike by a
// deployment script, or when neither exists (the system id is then "").
// Their node ids (MAC addresses) differ. A database copied from one to the
// other finds its original's path missing on the second machine; it must
// not retire the original, which is alive: its manifest and the bundles
// to it must stay, and it must go on receiving.
func TestCopyOnAnotherMachineIsNotRetired(t *testing.T) {
	ctx := t.Context()
	stick := t.TempDir()
	fac, home, f := facilityAnd(t, "home") // machine 1: system "sys-home", node "node-home"
	exchange := func(db *store.DB, cert string) *ExchangeResult {
		t.Helper()
		r, err := Exchange(ctx, db, stick, ExchangeOptions{CertID: cert})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	homeID := home.instance()
	exchange(home.db, home.cert)
	exchange(fac.db, fac.cert)
	exchange(home.db, home.cert)

	// The database is copied to machine 2, cloned from the same image:
	// same system id, another MAC.
	laptopPath := filepath.Join(t.TempDir(), "school.sqlite3")
	if _, err := home.app.Exec(`VACUUM INTO ?`, laptopPath); err != nil {
		t.Fatal(err)
	}
	laptop, laptopID := openAt(t, laptopPath, &store.Options{SystemID: "sys-home", NodeID: "node-laptop"})
	if laptopID == homeID {
		t.Fatal("the copy kept the original's instance id")
	}

	// Machine 1's path does not exist on machine 2: while the laptop
	// visits, home's file is out of sight (and back afterwards).
	homeDB := home.db
	away := home.path + ".on-machine-1"
	laptopVisit := func() *ExchangeResult {
		t.Helper()
		homeDB.Close()
		home.app.Close()
		if err := os.Rename(home.path, away); err != nil {
			t.Fatal(err)
		}
		r := exchange(laptop, home.cert)
		if err := os.Rename(away, home.path); err != nil {
			t.Fatal(err)
		}
		var got string
		homeDB, got = openAt(t, home.path, &store.Options{SystemID: "sys-home", NodeID: "node-home"})
		var err error
		if home.app, err = sql.Open("sqlite", home.path); err != nil {
			t.Fatal(err)
		}
		if got != homeID {
			t.Fatalf("home reopened as %s, was %s", got, homeID)
		}
		return r
	}

	fac.exec(`UPDATE classroom SET name = 'Class 9' WHERE id = ?`, f.classroom)
	var retired []string
	for range 3 { // visits in the order home, laptop, facility
		exchange(homeDB, home.cert)
		for _, fr := range laptopVisit().Files {
			if fr.Action == "retired" {
				retired = append(retired, fr.File+" ("+fr.Reason+")")
			}
		}
		exchange(fac.db, fac.cert)
	}
	exchange(homeDB, home.cert)
	if len(retired) > 0 {
		t.Errorf("the copy on machine 2 retired the live original on machine 1: %s", strings.Join(retired, "; "))
	}
	var name string
	if err := home.app.QueryRow(`SELECT name FROM classroom WHERE id = ?`, f.classroom).Scan(&name); err != nil || name != "Class 9" {
		t.Errorf("after 3 rounds the original still lacks the facility's edit: %q %v", name, err)
	}
}

// An exchange interrupted after an import committed (Ctrl-C between
// Finish's commit and the transfer row's last updates, the window
// finishApplied exists for) must not say that nothing of the bundle was
// applied: every record of it was, and the next run skips it as already
// applied.
func TestInterruptedAfterCommitSaysApplied(t *testing.T) {
	stick := t.TempDir()
	fac, home, f := facilityAnd(t, "home")
	for _, d := range []*device{home, fac} {
		if _, err := Exchange(t.Context(), d.db, stick, ExchangeOptions{CertID: d.cert}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	obs := func(e Event) {
		if !e.Push && e.Stage == Deserializing && e.Kind == EventCompleted && e.Err == "" {
			cancel() // Ctrl-C just after the import committed
		}
	}
	r, err := Exchange(ctx, home.db, stick, ExchangeOptions{CertID: home.cert, Observer: obs})
	if err == nil {
		t.Fatal("no error from the interrupted exchange")
	}
	var fr *FileResult
	for _, x := range r.Files {
		if strings.HasSuffix(x.File, bundleSuffix) {
			fr = x
		}
	}
	if fr == nil {
		t.Fatalf("no bundle listed: %+v", r.Files)
	}
	applied := home.count(`SELECT count(*) FROM classroom WHERE id = ?`, f.classroom)
	r2, err := Exchange(t.Context(), home.db, stick, ExchangeOptions{CertID: home.cert})
	if err != nil {
		t.Fatal(err)
	}
	var next string
	for _, x := range r2.Files {
		if x.File == fr.File {
			next = x.Action + " (" + x.Reason + ")"
		}
	}
	if applied == 1 && strings.Contains(fr.Reason, "nothing of it was applied") {
		t.Errorf("%s reported %q %q, but its records are in the app (classroom rows: %d) and the next run says %s",
			fr.File, fr.Action, fr.Reason, applied, next)
	}
}

// A database that comes back to a path it had before (a removable drive
// mounted as E:, then F:, then E: again; a folder renamed and renamed
// back) gets a new instance each time. The instance it had at that path
// is as dead as any other former one, though a file is there (this very
// database): it is retired too, and the facility stops writing for it.
func TestDatabaseBackAtAnOldPathRetiresItsOldIdentity(t *testing.T) {
	ctx := t.Context()
	stick := t.TempDir()
	fac, home, _ := facilityAnd(t, "home")
	old := home.instance()
	for _, d := range []*device{home, fac} {
		if _, err := Exchange(ctx, d.db, stick, ExchangeOptions{CertID: d.cert}); err != nil {
			t.Fatal(err)
		}
	}
	same := &store.Options{SystemID: "sys-home", NodeID: "node-home"}
	home.db.Close()
	home.app.Close()
	// At the other path for a while (opened, not taken to the stick).
	other := filepath.Join(t.TempDir(), "home.sqlite3")
	if err := os.Rename(home.path, other); err != nil {
		t.Fatal(err)
	}
	away, _ := openAt(t, other, same)
	away.Close()
	// Back where it was.
	if err := os.Rename(other, home.path); err != nil {
		t.Fatal(err)
	}
	db, id := openAt(t, home.path, same)
	if id == old {
		t.Skip("the database got its old instance back")
	}
	if _, err := Exchange(ctx, db, stick, ExchangeOptions{CertID: home.cert}); err != nil {
		t.Fatal(err)
	}
	r, err := Exchange(ctx, fac.db, stick, ExchangeOptions{CertID: fac.cert})
	if err != nil {
		t.Fatal(err)
	}
	for _, fr := range r.Files {
		if fr.Peer == old {
			t.Errorf("the facility still writes for the old identity %s (%s %s): its manifest was not retired", old, fr.Action, fr.File)
		}
	}
}
