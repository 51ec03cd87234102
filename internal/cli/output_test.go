package cli_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Someone who mistypes -o so that it names the database (tab completion
// of "school.<TAB>", or -o and --db swapped in a script) would lose the
// whole database if export, manifest, cert request or cert grant wrote
// their file over it. Every command that writes a file refuses a target that is the database it works on (or any SQLite
// file) before it does any work, and leaves the database as it was.
func TestOutputOverTheDatabaseIsRefused(t *testing.T) {
	for _, cmd := range []string{"export", "manifest", "cert grant", "cert request"} {
		t.Run(strings.ReplaceAll(cmd, " ", "_"), func(t *testing.T) {
			f := setup(t)
			seed(f.fac, f.root, 1, 2)
			request := filepath.Join(f.dir, "x.request")
			ok(t, "cert", "request", "--db", f.city.path, "--scope", "full-facility", "--param", "dataset_id="+f.root, "-o", request)
			args := map[string][]string{
				"export":       {"export", "--db", f.fac.path, "--cert", f.root, "--quiet", "-o", f.fac.path},
				"manifest":     {"manifest", "--db", f.fac.path, "--cert", f.root, "-o", f.fac.path},
				"cert grant":   {"cert", "grant", "--db", f.fac.path, "--parent", f.root, request, "-o", f.fac.path},
				"cert request": {"cert", "request", "--db", f.fac.path, "--scope", "full-facility", "--param", "dataset_id=" + f.root, "-o", f.fac.path},
			}[cmd]
			before := f.fac.state()
			r := morango(t, args...)
			if r.code == 0 {
				t.Errorf("%v with -o naming its own database: exit 0, want a refusal: %s", args[:2], r)
			}
			if s := morango(t, "status", "--db", f.fac.path); s.code != 0 {
				t.Fatalf("after %v the database is gone: %s", args[:2], s)
			}
			if d := differ(before, f.fac.state()); d != "" {
				t.Errorf("%v changed %s", args[:2], d)
			}
		})
	}
}

// Two tablets told to write stick/tablet.request: the second would replace
// the first's request before it was granted, and the chain granted for the
// second would reach the first, which could not sync with it. The second is
// refused; a device may replace its own request. A chain is not written
// over another chain its device may not have imported yet. A chain granted
// for another device's request is imported (its root becomes trusted) with
// a note that this device cannot sync with it.
func TestRequestAndChainFilesAreNotReplaced(t *testing.T) {
	f := setup(t)
	other := newApp(t, f.dir, "other")
	ok(t, "init", "--db", other.path, "--profile", f.profile)
	request := filepath.Join(f.dir, "tablet.request")
	req := func(db string) result {
		return morango(t, "cert", "request", "--db", db, "--scope", "full-facility", "--param", "dataset_id="+f.root, "-o", request)
	}
	ok(t, "cert", "request", "--db", f.city.path, "--scope", "full-facility", "--param", "dataset_id="+f.root, "-o", request)
	first := read(t, request)
	if r := req(other.path); r.code == 0 || !strings.Contains(r.stderr, "another device's request") || !strings.Contains(r.stderr, "another file") {
		t.Errorf("a second device's request over the first's: %s", r)
	}
	if read(t, request) != first {
		t.Fatalf("the first device's request was replaced")
	}
	if r := req(f.city.path); r.code != 0 {
		t.Errorf("a device replacing its own request: %s", r)
	}

	chain := filepath.Join(f.dir, "tablet.chain")
	ok(t, "cert", "grant", "--db", f.fac.path, "--parent", f.root, request, "-o", chain)
	granted := read(t, chain)
	if r := morango(t, "cert", "grant", "--db", f.fac.path, "--parent", f.root, request, "-o", chain); r.code == 0 || !strings.Contains(r.stderr, "may not have imported yet") {
		t.Errorf("a chain written over another: %s", r)
	}
	if read(t, chain) != granted {
		t.Fatalf("the chain was replaced")
	}
	if r := ok(t, "cert", "import", "--db", other.path, chain); !strings.Contains(r.stdout, "granted for another device's request") {
		t.Errorf("importing another device's chain says nothing of it: %s", r)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The chain 'cert grant' wrote to the stick for a tablet that has not
// imported it yet: 'morango export' and 'morango manifest' with -o naming
// it refuse to replace it (a bundle or manifest goes only where nothing,
// or a file of its own kind, is), or the tablet's certificate would be
// gone and its request made and granted again.
func TestExportAndManifestDoNotWriteOverAChainNotYetImported(t *testing.T) {
	f := setup(t)
	seed(f.fac, f.root, 1, 1)
	tablet := newApp(t, f.dir, "tablet")
	ok(t, "init", "--db", tablet.path, "--profile", f.profile)
	req, chain := filepath.Join(f.dir, "tablet.request"), filepath.Join(f.dir, "tablet.chain")
	ok(t, "cert", "request", "--db", tablet.path, "--scope", "single-user", "--param", "dataset_id="+f.root,
		"--param", "user_id="+"b0000000000000000000000000000000", "-o", req)
	ok(t, "cert", "grant", "--db", f.fac.path, "--parent", f.root, req, "-o", chain)
	granted, err := os.ReadFile(chain)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"export", "--db", f.fac.path, "--cert", f.root, "-o", chain},
		{"manifest", "--db", f.fac.path, "--cert", f.root, "-o", chain},
	} {
		r := morango(t, args...)
		now, err := os.ReadFile(chain)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(now, granted) {
			t.Errorf("morango %s replaced the chain granted for the tablet, not yet imported (exit %d): %s", args[0], r.code, r)
			if err := os.WriteFile(chain, granted, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The tablet can still import its chain.
	ok(t, "cert", "import", "--db", tablet.path, chain)
}

// The app on the school laptop is running and has committed a coach's
// note that is still only in the database's write-ahead log (the app's
// connection is open; SQLite has not checkpointed yet). Typing the output
// name with tab completion gives 'school.sqlite3-wal'. Replacing the
// write-ahead log with a bundle would take the committed note from the
// file another process reads, and lose it if the app stopped without a
// checkpoint: 'morango export -o school.sqlite3-wal' is refused.
func TestExportDoesNotWriteOverTheDatabasesWriteAheadLog(t *testing.T) {
	f := setup(t)
	seed(f.fac, f.root, 1, 1)
	ctx := context.Background()
	app, err := f.fac.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	for _, q := range []string{`PRAGMA journal_mode=WAL`, `PRAGMA wal_autocheckpoint=0`,
		`INSERT INTO adminnote (id, dataset_id, body) VALUES ('a0000001000000000000000000000000', '` + f.root + `', 'call the parents')`} {
		if _, err := app.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	wal := f.fac.path + "-wal"
	if st, err := os.Stat(wal); err != nil || st.Size() == 0 {
		t.Fatalf("no write-ahead log to test with: %v", err)
	}
	r := morango(t, "export", "--db", f.fac.path, "--cert", f.root, "-o", wal, "--quiet")
	if r.code == 0 {
		t.Errorf("export -o DB-wal wrote a bundle over the database's write-ahead log: %s", r)
	}
	// Another process opening the database now must see the note.
	other := openApp(t, f.fac.path)
	var n int
	if err := other.db.QueryRow(`SELECT count(*) FROM adminnote WHERE body = 'call the parents'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("after export -o %s, another process reads %d committed notes (%v)", filepath.Base(wal), n, err)
	}
}

// A person swaps the two paths and gives the stick's folder as --db
// ('morango exchange --db /media/usb/morango ...', or MORANGO_DB set to the
// folder). Every command fails, with a hint that --db names the database
// file, not SQLite's "unable to open database file" (or, from verify,
// "disk I/O error", which reads as a failing disk).
func TestDatabaseGivenAsAFolderSaysWhatToDo(t *testing.T) {
	f := setup(t)
	stick := filepath.Join(f.dir, "stick")
	if err := os.Mkdir(stick, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"status", "--db", stick},
		{"verify", "--db", stick},
		{"exchange", "--db", stick, "--cert", f.root, stick},
		{"init", "--db", stick, "--profile", f.profile},
	} {
		r := morango(t, args...)
		if r.code == 0 || !hasHint(r.stderr) {
			t.Errorf("%s --db FOLDER: want a failure with a hint saying --db names the database file: %s", args[0], r)
		}
	}
}
