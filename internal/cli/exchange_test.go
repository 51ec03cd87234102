package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// exchanged is the facility and city of setup, with seed's rows, after
// two rounds of visits (the facility's with args) to the folder it
// returns.
func exchanged(t *testing.T, args ...string) (*facility, string) {
	t.Helper()
	f := setup(t)
	seed(f.fac, f.root, 1, 1)
	stick := filepath.Join(f.dir, "stick")
	if err := os.Mkdir(stick, 0o755); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		ok(t, append(append([]string{"exchange", "--db", f.fac.path}, args...), stick)...)
		ok(t, "exchange", "--db", f.city.path, stick)
	}
	return f, stick
}

// A row the app wrote that can never become a version (here one in a
// facility this device may not write) is on no other device; exchange,
// the one command a visit runs, says so at every visit, and where to see
// why, instead of leaving it to morango status.
func TestExchangeSaysWhatCannotBeSent(t *testing.T) {
	f, stick := exchanged(t)
	f.city.exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES ('a0000009000000000000000000000000', 'ffffffffffffffffffffffffffffffff', 'wrong facility')`)
	for visit := range 2 {
		r := ok(t, "exchange", "--db", f.city.path, "--cert", f.cityCert, stick)
		if !strings.Contains(r.stdout, "NOT SENT  1 changed row") || !strings.Contains(r.stdout, "morango status --db "+f.city.path) {
			t.Fatalf("visit %d: exchange does not say a row cannot be sent:\n%s", visit+1, r)
		}
	}
	st := ok(t, "status", "--db", f.city.path)
	if !strings.Contains(st.stdout, "a0000009000000000000000000000000") {
		t.Fatalf("status does not say why:\n%s", st)
	}
	// Fixed, it goes.
	f.city.exec(`UPDATE adminnote SET dataset_id = ? WHERE id = 'a0000009000000000000000000000000'`, f.root)
	r := ok(t, "exchange", "--db", f.city.path, "--cert", f.cityCert, stick)
	if strings.Contains(r.stdout, "NOT SENT") || !strings.Contains(r.stdout, "exported") {
		t.Fatalf("the fixed row was not sent:\n%s", r)
	}
}

// A device that holds one certificate of its own needs no --cert: a visit
// is "morango exchange --db FILE DIR". One that holds several is told
// which there are.
func TestCertNeededOnlyWhenSeveral(t *testing.T) {
	f, stick := exchanged(t)
	if n := f.city.count(`SELECT count(*) FROM contentlog`); n != 1 {
		t.Fatalf("city holds %d logs, want 1", n)
	}
	// A peer that is up to date gets one line, not a progress line of
	// nothing written too.
	if r := ok(t, "exchange", "--db", f.fac.path, stick); !strings.Contains(r.stdout, "peer has everything") || strings.Contains(r.stderr, "wrote 0") {
		t.Errorf("an exchange with a peer up to date:\n%s", r)
	}
	ok(t, "manifest", "--db", f.city.path, "-o", filepath.Join(f.dir, "city.manifest"))
	ok(t, "export", "--db", f.fac.path, "-o", filepath.Join(f.dir, "all.bundle"))

	other := strings.Fields(ok(t, "cert", "root", "--db", f.fac.path, "--scope", "full-facility", "--another").stdout)[0]
	r := morango(t, "exchange", "--db", f.fac.path, stick)
	if r.code != 2 || !strings.Contains(r.stderr, "--cert "+f.root) || !strings.Contains(r.stderr, "--cert "+other) {
		t.Fatalf("exchange with two certificates of its own and no --cert: %s", r)
	}
	// One whose chain no longer verifies cannot sign: the other is the one.
	f.fac.exec(`UPDATE morango_certificate SET signature = 'AAAA' || substr(signature, 5) WHERE id = ?`, other)
	ok(t, "exchange", "--db", f.fac.path, stick)
	blank := newApp(t, f.dir, "blank")
	ok(t, "init", "--db", blank.path, "--profile", f.profile)
	r = morango(t, "exchange", "--db", blank.path, stick)
	if r.code != 2 || !strings.Contains(r.stderr, "no certificate of its own") || !strings.Contains(r.stderr, "cert request") {
		t.Fatalf("exchange with no certificate: %s", r)
	}
}

// A copy of a database syncs as a new device. When it meets the manifest
// of the identity it had before (the original file, still in use, or a
// moved file's former self on a machine whose ids morango cannot read),
// exchange cannot tell which it is and says so, with the command that
// stops the bundles if the old one is gone.
func TestExchangeNotesEarlierIdentity(t *testing.T) {
	f, stick := exchanged(t)
	var oldID string
	if err := f.city.db.QueryRow(`SELECT id FROM morango_instanceid WHERE current = 1`).Scan(&oldID); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(f.dir, "elsewhere"), 0o755); err != nil {
		t.Fatal(err)
	}
	cp := f.city.copyTo(filepath.Join(f.dir, "elsewhere", "city.sqlite3"))
	r := ok(t, "exchange", "--db", cp.path, stick)
	if !strings.Contains(r.stdout, "note: this database had that identity at "+f.city.path) ||
		!strings.Contains(r.stdout, "morango forget "+stick+" "+oldID) {
		t.Fatalf("the copy's exchange does not name its earlier identity:\n%s", r)
	}
	if _, err := os.Stat(filepath.Join(stick, oldID+".manifest")); err != nil {
		t.Fatalf("the original's manifest was removed: %v", err)
	}
}

// A bundle left for this device by a device that no longer visits the
// folder (forgotten here) is removed once applied: its writer, which
// removes the bundles its peers hold, will not.
func TestBundleOfForgottenWriterRemovedOnceApplied(t *testing.T) {
	f, stick := exchanged(t, "--name", "school")
	f.fac.exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES ('a0000009000000000000000000000000', ?, 'last words')`, f.root)
	if r := ok(t, "exchange", "--db", f.fac.path, stick); !strings.Contains(r.stdout, "exported") {
		t.Fatalf("the school's last bundle: %s", r)
	}
	ok(t, "forget", stick, "school")
	r := ok(t, "exchange", "--db", f.city.path, stick)
	if !strings.Contains(r.stdout, "imported") || !strings.Contains(r.stdout, "removed: its writer no longer visits this folder") {
		t.Fatalf("the forgotten school's bundle was not imported and removed:\n%s", r)
	}
	if n := f.city.count(`SELECT count(*) FROM adminnote WHERE body = 'last words'`); n != 1 {
		t.Fatalf("city holds %d of the school's last note", n)
	}
	files, err := filepath.Glob(filepath.Join(stick, "*.bundle"))
	if err != nil || len(files) != 0 {
		t.Fatalf("bundles left on the stick: %v %v", files, err)
	}
}

// A change of the app that cannot be synced (here an edit that moves a
// note into a facility this device may not write) is replaced when another
// device's version of the row arrives; it is kept on the device, and
// morango conflicts says so and lists it.
func TestReplacedChangeIsKeptAndListed(t *testing.T) {
	f, stick := exchanged(t)
	var note string
	if err := f.city.db.QueryRow(`SELECT id FROM adminnote LIMIT 1`).Scan(&note); err != nil {
		t.Fatal(err)
	}
	f.city.exec(`UPDATE adminnote SET dataset_id = 'ffffffffffffffffffffffffffffffff', body = 'moved away' WHERE id = ?`, note)
	ok(t, "exchange", "--db", f.city.path, stick)
	f.fac.exec(`UPDATE adminnote SET body = 'from the school' WHERE id = ?`, note)
	ok(t, "exchange", "--db", f.fac.path, stick)
	ok(t, "exchange", "--db", f.city.path, stick)
	if n := f.city.count(`SELECT count(*) FROM adminnote WHERE id = ? AND body = 'from the school'`, note); n != 1 {
		t.Fatalf("the school's version did not replace the change that could not be synced")
	}
	r := ok(t, "conflicts", "--db", f.city.path)
	if !strings.Contains(r.stdout, "1 version or change replaced on this device") {
		t.Errorf("conflicts does not mention the replaced change:\n%s", r)
	}
	r = ok(t, "conflicts", "--db", f.city.path, "--replaced")
	if !strings.Contains(r.stdout, "adminnote "+note) || !strings.Contains(r.stdout, "a change of the app that could not be synced") ||
		!strings.Contains(r.stdout, "moved away") {
		t.Errorf("conflicts --replaced does not list the replaced change:\n%s", r)
	}
}

// A Mac writing to a FAT or exFAT stick leaves a hidden "._NAME" file
// beside each file it copies (AppleDouble: the file's attributes). They
// are not morango's: exchange leaves them alone, fails on none of them and
// takes none for a device; forget lists none as one.
func TestExchangeLeavesHiddenFilesAlone(t *testing.T) {
	f, stick := exchanged(t, "--name", "school")
	f.fac.exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES ('a0000009000000000000000000000000', ?, 'after the copy')`, f.root)
	ok(t, "exchange", "--db", f.fac.path, stick)
	files, err := os.ReadDir(stick)
	if err != nil {
		t.Fatal(err)
	}
	appleDouble := append([]byte{0, 5, 22, 7, 0, 2, 0, 0}, "Mac OS X        "...)
	var hidden []string
	for _, e := range files {
		if n := e.Name(); strings.HasSuffix(n, ".bundle") || strings.HasSuffix(n, ".manifest") {
			hidden = append(hidden, "._"+n)
			if err := os.WriteFile(filepath.Join(stick, "._"+n), appleDouble, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(hidden) < 3 {
		t.Fatalf("the stick holds %d bundles and manifests", len(hidden))
	}
	for _, db := range []string{f.city.path, f.fac.path} {
		r := morango(t, "exchange", "--db", db, stick)
		if r.code != 0 || strings.Contains(r.stdout, "._") || strings.Contains(r.stdout, "FAILED") {
			t.Errorf("exchange with AppleDouble files on the stick:\n%s", r)
		}
	}
	if n := f.city.count(`SELECT count(*) FROM adminnote WHERE body = 'after the copy'`); n != 1 {
		t.Errorf("city holds %d of the note written after the copy", n)
	}
	if r := morango(t, "forget", stick, "nobody"); strings.Contains(r.stderr, "._") {
		t.Errorf("forget lists a hidden file as a device:\n%s", r)
	}
	for _, n := range hidden {
		if _, err := os.Stat(filepath.Join(stick, n)); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
}

// A bundle renamed on the stick, or copied beside itself ("NAME (1).bundle",
// as a file manager names a copy), is not the one its writer replaces or
// removes: once applied by the device it is addressed to, it is removed
// there, and the stick is left with only the devices' manifests when
// everyone holds everything.
func TestRenamedBundleRemovedOnceApplied(t *testing.T) {
	f, stick := exchanged(t)
	f.fac.exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES ('a0000009000000000000000000000000', ?, 'renamed')`, f.root)
	ok(t, "exchange", "--db", f.fac.path, stick)
	bundles, err := filepath.Glob(filepath.Join(stick, "*.bundle"))
	if err != nil || len(bundles) != 1 {
		t.Fatalf("bundles on the stick: %v %v", bundles, err)
	}
	data, err := os.ReadFile(bundles[0])
	if err != nil {
		t.Fatal(err)
	}
	copied := strings.TrimSuffix(bundles[0], ".bundle") + " (1).bundle"
	renamed := filepath.Join(stick, "for the city.bundle")
	if err := os.WriteFile(copied, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(bundles[0], renamed); err != nil {
		t.Fatal(err)
	}
	r := ok(t, "exchange", "--db", f.city.path, stick)
	if n := f.city.count(`SELECT count(*) FROM adminnote WHERE body = 'renamed'`); n != 1 {
		t.Fatalf("city holds %d of the note:\n%s", n, r)
	}
	for range 2 {
		ok(t, "exchange", "--db", f.fac.path, stick)
		ok(t, "exchange", "--db", f.city.path, stick)
	}
	left, err := filepath.Glob(filepath.Join(stick, "*.bundle"))
	if err != nil || len(left) != 0 {
		t.Fatalf("bundles left on the stick: %v %v", left, err)
	}
}

// An exchange's line for an imported bundle adds up: the records already
// here (a bundle written from an older manifest, or a stick's copy) are
// counted, as import counts them.
func TestExchangeCountsRecordsAlreadyHere(t *testing.T) {
	f, stick := exchanged(t)
	f.fac.exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES ('a0000009000000000000000000000000', ?, 'twice')`, f.root)
	ok(t, "exchange", "--db", f.fac.path, stick)
	bundles, err := filepath.Glob(filepath.Join(stick, "*.bundle"))
	if err != nil || len(bundles) != 1 {
		t.Fatalf("bundles on the stick: %v %v", bundles, err)
	}
	first, err := os.ReadFile(bundles[0])
	if err != nil {
		t.Fatal(err)
	}
	ok(t, "exchange", "--db", f.fac.path, stick) // writes the bundle again
	if r := ok(t, "exchange", "--db", f.city.path, stick); !strings.Contains(r.stdout, "1 record (1 new, 0 updated, 0 already here, 0 conflicts)") {
		t.Errorf("exchange importing a new record:\n%s", r)
	}
	if err := os.WriteFile(bundles[0], first, 0o644); err != nil { // the first one, back from another stick
		t.Fatal(err)
	}
	if r := ok(t, "exchange", "--db", f.city.path, stick); !strings.Contains(r.stdout, "1 record (0 new, 0 updated, 1 already here, 0 conflicts)") {
		t.Errorf("exchange importing a record already here:\n%s", r)
	}
}

// A file that fails in an exchange says what to do about it, as the same
// failure does in import: a bundle cut short on the stick is written anew
// by its writer's next exchange.
func TestExchangeFailureSaysWhatToDo(t *testing.T) {
	f, stick := exchanged(t)
	f.fac.exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES ('a0000009000000000000000000000000', ?, 'cut')`, f.root)
	ok(t, "exchange", "--db", f.fac.path, stick)
	bundles, err := filepath.Glob(filepath.Join(stick, "*.bundle"))
	if err != nil || len(bundles) != 1 {
		t.Fatalf("bundles on the stick: %v %v", bundles, err)
	}
	for _, size := range []int64{100, 2000} { // in the header, in the records
		if err := os.Truncate(bundles[0], size); err != nil {
			t.Fatal(err)
		}
		before := f.city.state()
		r := morango(t, "exchange", "--db", f.city.path, stick)
		if r.code != 1 || !strings.Contains(r.stdout, "FAILED") || !strings.Contains(r.stdout, "writes it anew at its next exchange") {
			t.Errorf("exchange with a bundle cut at %d bytes: want exit 1, FAILED and what to do:\n%s", size, r)
		}
		if d := differ(before, f.city.state()); d != "" {
			t.Errorf("the cut bundle changed %s", d)
		}
		r = morango(t, "exchange", "--db", f.city.path, "--json", stick)
		var res struct {
			Files []struct{ Action, Hint string }
		}
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(res.Files, func(f struct{ Action, Hint string }) bool {
			return f.Action == "failed" && strings.Contains(f.Hint, "writes it anew")
		}) {
			t.Errorf("exchange --json gives no hint for the cut bundle:\n%s", r.stdout)
		}
	}
	ok(t, "exchange", "--db", f.fac.path, stick)
	ok(t, "exchange", "--db", f.city.path, stick)
	if n := f.city.count(`SELECT count(*) FROM adminnote WHERE body = 'cut'`); n != 1 {
		t.Errorf("city holds %d of the note after the school wrote its bundle anew", n)
	}
}

// A bundle damaged on the stick fails the exchange of the device it is
// addressed to, which is told what to do; the other devices, which would
// skip it whole, skip it as addressed to another device by its name, and
// their visits succeed.
func TestDamagedBundleForAnotherDeviceIsSkipped(t *testing.T) {
	f, stick := exchanged(t)
	city2 := newApp(t, f.dir, "city2")
	ok(t, "init", "--db", city2.path, "--profile", f.profile)
	req, chain := filepath.Join(f.dir, "city2.request"), filepath.Join(f.dir, "city2.chain")
	ok(t, "cert", "request", "--db", city2.path, "--scope", "full-facility", "--param", "dataset_id="+f.root, "-o", req)
	ok(t, "cert", "grant", "--db", f.fac.path, "--parent", f.root, req, "-o", chain)
	ok(t, "cert", "import", "--db", city2.path, chain)
	ok(t, "exchange", "--db", city2.path, stick)
	f.fac.exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES ('a0000009000000000000000000000000', ?, 'cut')`, f.root)
	ok(t, "exchange", "--db", f.fac.path, stick)
	var city2ID string
	if err := city2.db.QueryRow(`SELECT id FROM morango_instanceid WHERE current = 1`).Scan(&city2ID); err != nil {
		t.Fatal(err)
	}
	cut, err := filepath.Glob(filepath.Join(stick, "*-to-"+city2ID+".bundle"))
	if err != nil || len(cut) != 1 {
		t.Fatalf("the bundle for city2: %v %v", cut, err)
	}
	if err := os.Truncate(cut[0], 100); err != nil {
		t.Fatal(err)
	}
	r := ok(t, "exchange", "--db", f.city.path, stick)
	if !strings.Contains(r.stdout, "skipped   "+filepath.Base(cut[0])+" (addressed to another device") || strings.Contains(r.stdout, "FAILED") {
		t.Errorf("city's exchange with city2's bundle damaged:\n%s", r)
	}
	if n := f.city.count(`SELECT count(*) FROM adminnote WHERE body = 'cut'`); n != 1 {
		t.Errorf("city holds %d of the note", n)
	}
	r = morango(t, "exchange", "--db", city2.path, stick)
	if r.code != 1 || !strings.Contains(r.stdout, "FAILED    "+filepath.Base(cut[0])) || !strings.Contains(r.stdout, "writes it anew") {
		t.Errorf("city2's exchange with its bundle damaged: want exit 1, FAILED and what to do:\n%s", r)
	}
}

// Exchange names each peer by the name it gave itself with --name, as its
// manifest on the stick says, beside the bundle's file: a teacher tells
// thirty tablets apart by their names, not by their ids.
func TestExchangeNamesPeers(t *testing.T) {
	f, stick := exchanged(t, "--name", "school")
	ok(t, "exchange", "--db", f.city.path, "--name", "city laptop", stick)
	f.fac.exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES ('a0000009000000000000000000000000', ?, 'for the city')`, f.root)
	if r := ok(t, "exchange", "--db", f.fac.path, stick); !strings.Contains(r.stdout, `(for "city laptop"): 1 record`) {
		t.Fatalf("the school's export does not name the city laptop:\n%s", r)
	}
	r := ok(t, "exchange", "--db", f.city.path, "--json", stick)
	type file struct {
		Action   string
		PeerName string `json:"peer_name"`
	}
	var res struct{ Files []file }
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("%v:\n%s", err, r)
	}
	if !slices.ContainsFunc(res.Files, func(f file) bool {
		return f.Action == "imported" && f.PeerName == "school"
	}) {
		t.Fatalf("the city's import does not name the school:\n%s", r)
	}
	if r := ok(t, "exchange", "--db", f.city.path, stick); !strings.Contains(r.stdout, `up to date peer `) || !strings.Contains(r.stdout, `("school") holds all`) {
		t.Fatalf("the city's up-to-date line does not name the school:\n%s", r)
	}
}
