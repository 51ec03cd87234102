package session

import (
	"bytes"
	"crypto/rsa"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/morango-sync/morango/bundle"
	"github.com/morango-sync/morango/certs"
	"github.com/morango-sync/morango/ids"
	"github.com/morango-sync/morango/merge"
	"github.com/morango-sync/morango/profile"
	"github.com/morango-sync/morango/store"
)

// The app's tables, as testdata/schema.sql creates them.
var appTables = []string{"facilitydataset", "facilityuser", "classroom", "contentlog", "adminnote"}

// device is one test device: a real SQLite file, the app writing it with
// plain SQL through its own connection, and the engine.
type device struct {
	t    *testing.T
	name string
	path string
	app  *sql.DB
	db   *store.DB
	cert string // the certificate this device signs with
}

func testdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newDevice(t *testing.T, name string) *device {
	return newDeviceProfile(t, name, "facilitydata")
}

// newDeviceProfile makes a device of the test app whose profile has the
// given name (the scope definitions follow it).
func newDeviceProfile(t *testing.T, name, profileName string) *device {
	t.Helper()
	return newDeviceWith(t, name, "", bytes.ReplaceAll(testdata(t, "profile.json"), []byte(`"facilitydata"`), []byte(`"`+profileName+`"`)))
}

// newAppDevice is newDevice with more of the app's tables (schema) and
// their models in the profile (models, JSON objects each followed by a
// comma).
func newAppDevice(t *testing.T, name, schema, models string) *device {
	t.Helper()
	return newDeviceWith(t, name, schema, bytes.Replace(testdata(t, "profile.json"), []byte(`"models": [`), []byte(`"models": [`+models), 1))
}

// newDeviceWith creates a device whose app holds the test schema and
// extra, synced with the profile pj.
func newDeviceWith(t *testing.T, name, extra string, pj []byte) *device {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".sqlite3")
	app, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	if _, err := app.Exec(string(testdata(t, "schema.sql")) + extra); err != nil {
		t.Fatal(err)
	}
	p, err := profile.Parse(pj)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Init(t.Context(), path, p, &store.Options{SystemID: "sys-" + name, NodeID: "node-" + name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &device{t: t, name: name, path: path, app: app, db: db}
}

func (d *device) exec(q string, args ...any) {
	d.t.Helper()
	if _, err := d.app.Exec(q, args...); err != nil {
		d.t.Fatalf("%s: %s: %v", d.name, q, err)
	}
}

func (d *device) count(q string, args ...any) int {
	d.t.Helper()
	var n int
	if err := d.app.QueryRow(q, args...).Scan(&n); err != nil {
		d.t.Fatalf("%s: %s: %v", d.name, q, err)
	}
	return n
}

func (d *device) instance() string {
	d.t.Helper()
	in, err := d.db.Instance(d.t.Context())
	if err != nil {
		d.t.Fatal(err)
	}
	return in.ID
}

// root makes a full-facility root certificate on d, trusted, and returns its
// id, which is the facility's dataset id.
func (d *device) root() string {
	d.t.Helper()
	def, ok := d.db.Profile().ScopeDefinition("full-facility")
	if !ok {
		d.t.Fatal("no full-facility scope definition")
	}
	root, err := certs.NewRoot(def, nil)
	if err != nil {
		d.t.Fatal(err)
	}
	if err := d.db.SaveCertificate(d.t.Context(), root, certs.PrivateKeyString(root.PrivateKey), true); err != nil {
		d.t.Fatal(err)
	}
	d.cert = root.ID
	return root.ID
}

// ownCert returns a certificate d holds, with its private key.
func (d *device) ownCert(id string) *certs.Certificate {
	d.t.Helper()
	sc, err := d.db.Certificate(d.t.Context(), id)
	if err != nil {
		d.t.Fatal(err)
	}
	c, err := certs.Deserialize(sc.Link.Serialized, sc.Link.Signature)
	if err != nil {
		d.t.Fatal(err)
	}
	if c.PrivateKey, err = certs.ParsePrivateKey(sc.PrivateKey); err != nil {
		d.t.Fatalf("%s: certificate %s: %v", d.name, id, err)
	}
	return c
}

// grant gives child a certificate of scope with params, granted by parent's
// certificate, the way 'morango cert request / grant / import' do it: the
// request and the chain travel as JSON files, the key stays on the child
// as a pending request until the chain comes back.
func grant(t *testing.T, parent, child *device, scope string, params map[string]string) string {
	t.Helper()
	ctx := t.Context()
	def, ok := child.db.Profile().ScopeDefinition(scope)
	if !ok {
		t.Fatalf("no scope definition %s", scope)
	}
	req, key, err := certs.NewRequest(def, params, child.db.Profile().Name)
	if err != nil {
		t.Fatal(err)
	}
	if err := child.db.SaveRequest(ctx, req.PublicKey, def.ID, req.ScopeParams, certs.PrivateKeyString(key)); err != nil {
		t.Fatal(err)
	}
	reqFile, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	req, err = certs.ParseRequest(reqFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := parent.ownCert(parent.cert).Grant(req, parent.db.Profile())
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.db.SaveCertificate(ctx, c, "", false); err != nil {
		t.Fatal(err)
	}
	chain, err := parent.db.Chain(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	chainFile, err := json.Marshal(chain)
	if err != nil {
		t.Fatal(err)
	}
	links, err := certs.ParseChain(chainFile)
	if err != nil {
		t.Fatal(err)
	}
	verified, err := certs.VerifyChain(links, child.db.Profile())
	if err != nil {
		t.Fatal(err)
	}
	for i, vc := range verified {
		key, err := child.db.RequestKey(ctx, certs.PublicKeyString(vc.PublicKey))
		if err != nil {
			t.Fatal(err)
		}
		if err := child.db.SaveCertificate(ctx, vc, key, i == 0); err != nil {
			t.Fatal(err)
		}
	}
	child.cert = c.ID
	return c.ID
}

func (d *device) manifest(path string) {
	d.t.Helper()
	if _, err := WriteManifest(d.t.Context(), d.db, nil, path, ManifestOptions{CertID: d.cert, Name: d.name}); err != nil {
		d.t.Fatalf("%s: manifest: %v", d.name, err)
	}
}

// export writes a bundle of what the peer whose manifest is given lacks
// (everything under d's write scope without one).
func (d *device) export(path, manifest string) *ExportResult {
	d.t.Helper()
	r, err := Export(d.t.Context(), d.db, &DiskConnection{Bundle: path, Manifest: manifest},
		ExportOptions{CertID: d.cert})
	if err != nil {
		d.t.Fatalf("%s: export: %v", d.name, err)
	}
	return r
}

// sends numbers the files sendTo writes.
var sends atomic.Int64

// sendTo carries what to lacks from d: to's manifest, a bundle for it and
// its import on to, through files in dir. With skipEmpty nothing is
// written or imported when to lacks nothing. It returns the records sent
// and the import's result (nil when there was no import).
func (d *device) sendTo(to *device, dir string, skipEmpty bool) (int64, *ImportResult) {
	d.t.Helper()
	n := sends.Add(1)
	m := filepath.Join(dir, fmt.Sprintf("%d-%s.manifest", n, to.name))
	b := filepath.Join(dir, fmt.Sprintf("%d-%s-to-%s.bundle", n, d.name, to.name))
	to.manifest(m)
	e, err := Export(d.t.Context(), d.db, &DiskConnection{Bundle: b, Manifest: m}, ExportOptions{CertID: d.cert, SkipEmpty: skipEmpty})
	if err != nil {
		d.t.Fatalf("%s: export: %v", d.name, err)
	}
	if _, err := os.Stat(b); err != nil {
		return e.Records, nil
	}
	return e.Records, to.mustImport(b)
}

func (d *device) importBundle(path string) (*ImportResult, error) {
	return Import(d.t.Context(), d.db, &DiskConnection{Bundle: path}, ImportOptions{})
}

func (d *device) mustImport(path string) *ImportResult {
	d.t.Helper()
	r, err := d.importBundle(path)
	if err != nil {
		d.t.Fatalf("%s: import %s: %v", d.name, filepath.Base(path), err)
	}
	return r
}

// ---- dumps

// dump returns the rows of each table, each row as the SQL literals of its
// columns (so 1 and 1.0 and '1' differ), sorted. Columns named in skip as
// "table.column" are left out.
func dump(t *testing.T, db *sql.DB, tables []string, skip ...string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, tb := range tables {
		rows, err := db.Query(`SELECT name FROM pragma_table_info(?) ORDER BY cid`, tb)
		if err != nil {
			t.Fatal(err)
		}
		var cols []string
		for rows.Next() {
			var c string
			if err := rows.Scan(&c); err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(skip, tb+"."+c) {
				cols = append(cols, fmt.Sprintf(`quote("%s")`, c))
			}
		}
		rows.Close()
		if len(cols) == 0 {
			t.Fatalf("table %s has no columns", tb)
		}
		rows, err = db.Query(fmt.Sprintf(`SELECT %s FROM "%s"`, strings.Join(cols, ` || ' | ' || `), tb))
		if err != nil {
			t.Fatal(err)
		}
		lines := []string{}
		for rows.Next() {
			var l string
			if err := rows.Scan(&l); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, l)
		}
		rows.Close()
		slices.Sort(lines)
		out[tb] = lines
	}
	return out
}

// allTables lists every table of the database: the app's and morango_*.
func allTables(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var l []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		l = append(l, n)
	}
	return l
}

// syncState is what two devices that hold the same data have in common: the
// app's rows, the store's records (without the columns that say how each
// device got them) and their histories.
func (d *device) syncState() map[string][]string {
	d.t.Helper()
	return dump(d.t, d.app, append(slices.Clone(appTables), "morango_store", "morango_recordmaxcounter"),
		"morango_store.last_transfer_session_id", "morango_store.dirty_bit", "morango_store.deserialization_error")
}

// diffStates reports the first differences between two dumps.
func diffStates(a, b map[string][]string) string {
	var out []string
	for tb, ra := range a {
		rb := b[tb]
		if slices.Equal(ra, rb) {
			continue
		}
		onlyA := slices.DeleteFunc(slices.Clone(ra), func(s string) bool { return slices.Contains(rb, s) })
		onlyB := slices.DeleteFunc(slices.Clone(rb), func(s string) bool { return slices.Contains(ra, s) })
		out = append(out, fmt.Sprintf("%s: %d rows vs %d\n  only first:  %.3q\n  only second: %.3q", tb, len(ra), len(rb), onlyA, onlyB))
	}
	for tb := range b {
		if _, ok := a[tb]; !ok {
			out = append(out, "table only in the second: "+tb)
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// storeRecord is one record of a device's store.
type storeRecord struct {
	Partition, Serialized, Conflicting string
	Deleted, HardDeleted, Dirty        bool
}

func (d *device) record(id string) *storeRecord {
	d.t.Helper()
	var r storeRecord
	err := d.app.QueryRow(`SELECT partition, serialized, conflicting_serialized_data, deleted, hard_deleted, dirty_bit
		FROM morango_store WHERE id = ?`, id).Scan(&r.Partition, &r.Serialized, &r.Conflicting, &r.Deleted, &r.HardDeleted, &r.Dirty)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		d.t.Fatal(err)
	}
	return &r
}

// partitions lists the distinct partitions of d's store.
func (d *device) partitions() []string {
	d.t.Helper()
	rows, err := d.app.Query(`SELECT DISTINCT partition FROM morango_store ORDER BY partition`)
	if err != nil {
		d.t.Fatal(err)
	}
	defer rows.Close()
	var l []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			d.t.Fatal(err)
		}
		l = append(l, p)
	}
	return l
}

// ---- the app's data

// facilityData is a facility's rows: the dataset (whose id is the root
// certificate's), two learners with logs, an admin, a classroom and an
// admin note.
type facilityData struct {
	dataset, learner, other, admin, classroom, note string
	learnerLog, otherLog                            string
}

func seedFacility(d *device) facilityData {
	d.t.Helper()
	f := facilityData{dataset: d.cert, learner: ids.Random(), other: ids.Random(), admin: ids.Random(),
		classroom: ids.Random(), note: ids.Random(), learnerLog: ids.Random(), otherLog: ids.Random()}
	d.exec(`INSERT INTO facilitydataset (id, description) VALUES (?, 'Riverside school')`, f.dataset)
	for _, u := range [][2]string{{f.learner, "ana"}, {f.other, "ben"}, {f.admin, "coach"}} {
		d.exec(`INSERT INTO facilityuser (id, dataset_id, username) VALUES (?, ?, ?)`, u[0], f.dataset, u[1])
	}
	d.exec(`INSERT INTO classroom (id, dataset_id, name) VALUES (?, ?, 'Class 4')`, f.classroom, f.dataset)
	d.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, 'c1', 0.25)`, f.learnerLog, f.dataset, f.learner)
	d.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, 'c1', 0.75)`, f.otherLog, f.dataset, f.other)
	d.exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES (?, ?, 'budget')`, f.note, f.dataset)
	return f
}

// learnerScope is what a single-user device of the learner may read.
func (f facilityData) learnerScope() certs.Filter {
	return certs.Filter{f.dataset + ":allusers-ro", f.dataset + ":user-ro:" + f.learner, f.dataset + ":user-rw:" + f.learner}
}

// ---- crafted bundles

// writeBundle writes a bundle with the bundle package directly: h's counts
// are computed from recs, and key signs it.
func writeBundle(t *testing.T, path string, h bundle.Header, key *rsa.PrivateKey, recs []bundle.Record) {
	t.Helper()
	h.Counts = map[string]int64{}
	h.Records = int64(len(recs))
	for _, r := range recs {
		h.Counts[r.ModelName]++
	}
	if h.TransferID == "" {
		h.TransferID = ids.Random()
	}
	if h.Created == "" {
		h.Created = time.Now().UTC().Format(time.RFC3339)
	}
	err := bundle.WriteFile(bundle.OSFS{}, path, func(w io.Writer) error {
		bw, err := bundle.NewWriter(w, &h, key, nil)
		if err != nil {
			return err
		}
		for i := range recs {
			if err := bw.Write(&recs[i]); err != nil {
				return err
			}
		}
		return bw.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// logRecord is a contentlog record as a bundle carries it, written by inst
// at counter.
func logRecord(id, dataset, user, content string, progress float64, inst string, counter int64) bundle.Record {
	ser := fmt.Sprintf(`{"id":%q,"dataset_id":%q,"user_id":%q,"content_id":%q,"progress":%v}`, id, dataset, user, content, progress)
	return bundle.Record{ModelUUID: id, Profile: "facilitydata", ModelName: "contentlog", Partition: dataset + ":user-rw:" + user,
		Serialized: ser, LastSavedInstance: inst, LastSavedCounter: counter, RMC: []bundle.Counter{{Instance: inst, Counter: counter}}}
}

func sorted(l []string) []string {
	c := slices.Clone(l)
	slices.Sort(c)
	return c
}

// inspect reads a bundle with bundle.Inspect, checking its signature with
// the key of the last certificate of its own chain.
func inspect(t *testing.T, path string) *bundle.Stats {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := bundle.Inspect(f, &bundle.ReaderOptions{Verify: func(h *bundle.Header) (*rsa.PublicKey, error) {
		l := h.Chain[len(h.Chain)-1]
		c, err := certs.Deserialize(l.Serialized, l.Signature)
		if err != nil {
			return nil, err
		}
		return c.PublicKey, nil
	}})
	if err != nil {
		t.Fatalf("inspect %s: %v", filepath.Base(path), err)
	}
	if s.Signature != bundle.SignatureValid || !s.DigestValid {
		t.Fatalf("inspect %s: signature %s, digest valid %t: %s", filepath.Base(path), s.Signature, s.DigestValid, s.Problem)
	}
	return s
}

// ---- tests

// TestRoundTrip moves every kind of change between two full-facility
// devices through bundle files, both ways: creates, updates, a conflict,
// a soft delete and a hard delete that races an edit.
func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	fac := newDevice(t, "facility")
	fac.root()
	city := newDevice(t, "city")
	grant(t, fac, city, "full-facility", map[string]string{"dataset_id": fac.cert})
	f := seedFacility(fac)

	n := 0
	send := func(from, to *device) (*ExportResult, *ImportResult) {
		t.Helper()
		n++
		m := filepath.Join(dir, fmt.Sprintf("%d-%s.manifest", n, to.name))
		b := filepath.Join(dir, fmt.Sprintf("%d-%s-to-%s.bundle", n, from.name, to.name))
		to.manifest(m)
		e := from.export(b, m)
		if !e.ForPeer {
			t.Errorf("export %d was not computed for the peer's manifest", n)
		}
		return e, to.mustImport(b)
	}
	same := func(when string) {
		t.Helper()
		if d := diffStates(fac.syncState(), city.syncState()); d != "" {
			t.Fatalf("%s: facility and city differ:\n%s", when, d)
		}
		for _, d := range []*device{fac, city} {
			if n := d.count(`SELECT count(*) FROM morango_store WHERE dirty_bit OR deserialization_error != ''`); n != 0 {
				t.Errorf("%s: %s has %d records not written to the app", when, d.name, n)
			}
			if n := d.count(`SELECT count(*) FROM morango_dirty`); n != 0 {
				t.Errorf("%s: %s has %d app rows not serialized", when, d.name, n)
			}
		}
	}

	// Creates.
	_, r := send(fac, city)
	if r.Store.New != 8 || r.Store.Refused != 0 || r.Store.Deserialize.Written != 8 {
		t.Fatalf("first import: %+v", r.Store)
	}
	same("after the first bundle")

	// Both sides change things while apart.
	fac.exec(`UPDATE facilityuser SET full_name = 'Ana Lima' WHERE id = ?`, f.learner)
	created := ids.Random()
	city.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, 'c2', 0.1)`, created, f.dataset, f.other)
	fac.exec(`UPDATE contentlog SET progress = 0.5 WHERE id = ?`, f.learnerLog)
	city.exec(`UPDATE contentlog SET progress = 0.9 WHERE id = ?`, f.learnerLog)
	fac.exec(`DELETE FROM classroom WHERE id = ?`, f.classroom)
	// The admin erases the note while City, not knowing, edits it.
	city.exec(`UPDATE adminnote SET body = 'secret salaries' WHERE id = ?`, f.note)
	fac.exec(`INSERT INTO morango_harddeletedmodels (id, profile) VALUES (?, 'facilitydata')`, f.note)
	fac.exec(`DELETE FROM adminnote WHERE id = ?`, f.note)

	_, r1 := send(fac, city)
	_, r2 := send(city, fac)
	if r1.Store.Refused != 0 || r2.Store.Refused != 0 {
		t.Fatalf("refusals: %+v %+v", r1.Store.Refusals, r2.Store.Refusals)
	}
	if r1.Store.Conflicts == 0 {
		t.Errorf("city saw no conflict: %+v", r1.Store)
	}
	same("after the exchange both ways")

	for _, d := range []*device{fac, city} {
		// Update.
		var name string
		if err := d.app.QueryRow(`SELECT full_name FROM facilityuser WHERE id = ?`, f.learner).Scan(&name); err != nil || name != "Ana Lima" {
			t.Errorf("%s: updated user: %q %v", d.name, name, err)
		}
		// Create.
		if n := d.count(`SELECT count(*) FROM contentlog WHERE id = ? AND progress = 0.1`, created); n != 1 {
			t.Errorf("%s: created log missing", d.name)
		}
		// Conflict: one version is the head, the other is kept.
		rec := d.record(f.learnerLog)
		sib, err := merge.DecodeSiblings(rec.Conflicting)
		if err != nil || len(sib) != 1 {
			t.Fatalf("%s: conflicting versions %q: %v", d.name, rec.Conflicting, err)
		}
		var head, lost struct{ Progress float64 }
		if err := json.Unmarshal([]byte(rec.Serialized), &head); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(sib[0].Serialized), &lost); err != nil {
			t.Fatal(err)
		}
		if got := []float64{head.Progress, lost.Progress}; !slices.Contains(got, 0.5) || !slices.Contains(got, 0.9) {
			t.Errorf("%s: head %s and kept version %s are not the two edits", d.name, rec.Serialized, sib[0].Serialized)
		}
		if n := d.count(`SELECT count(*) FROM contentlog WHERE id = ? AND progress = ?`, f.learnerLog, head.Progress); n != 1 {
			t.Errorf("%s: the app's row is not the head", d.name)
		}
		// Soft delete: the row leaves the app, the record keeps its data.
		if rec := d.record(f.classroom); rec == nil || !rec.Deleted || rec.HardDeleted || !strings.Contains(rec.Serialized, "Class 4") {
			t.Errorf("%s: soft-deleted classroom: %+v", d.name, rec)
		}
		if n := d.count(`SELECT count(*) FROM classroom WHERE id = ?`, f.classroom); n != 0 {
			t.Errorf("%s: soft-deleted classroom still in the app", d.name)
		}
		// Hard delete: erased, without conflicts, everywhere.
		if rec := d.record(f.note); rec == nil || !rec.HardDeleted || !rec.Deleted || rec.Serialized != "{}" || rec.Conflicting != "" {
			t.Errorf("%s: hard-deleted note: %+v", d.name, rec)
		}
		if n := d.count(`SELECT count(*) FROM adminnote WHERE id = ?`, f.note); n != 0 {
			t.Errorf("%s: hard-deleted note still in the app", d.name)
		}
		for tb, rows := range dump(t, d.app, allTables(t, d.app)) {
			for _, row := range rows {
				if strings.Contains(row, "secret salaries") || strings.Contains(row, "budget") {
					t.Errorf("%s: erased data survives in %s: %.200s", d.name, tb, row)
				}
			}
		}
	}

	// Nothing is left to send either way.
	for _, p := range [][2]*device{{fac, city}, {city, fac}} {
		if e, _ := send(p[0], p[1]); e.Records != 0 {
			t.Errorf("%s still sends %d records to %s: %v", p[0].name, e.Records, p[1].name, e.Counts)
		}
	}
	same("at the end")
}

// TestSingleUserScope gives a learner's tablet a single-user certificate:
// it receives only its learner's data and the shared read-only data, sends
// only its write scope, and a bundle it signs that carries another
// learner's log gets that record refused.
func TestSingleUserScope(t *testing.T) {
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	fac := newDevice(t, "facility")
	fac.root()
	f := seedFacility(fac)
	home := newDevice(t, "home")
	grant(t, fac, home, "single-user", map[string]string{"dataset_id": f.dataset, "user_id": f.learner})
	read := f.learnerScope()
	write := []string{f.dataset + ":user-rw:" + f.learner, f.dataset + ":anonymous"}

	holdsOnlyItsOwn := func(when string) {
		t.Helper()
		for _, p := range home.partitions() {
			if !read.Contains(p) {
				t.Errorf("%s: home holds partition %s", when, p)
			}
		}
		for _, id := range []string{f.other, f.admin, f.otherLog, f.note} {
			if home.record(id) != nil {
				t.Errorf("%s: home holds record %s", when, id)
			}
		}
		for q, want := range map[string]int{
			`SELECT count(*) FROM facilitydataset`:                                 1,
			`SELECT count(*) FROM facilityuser WHERE id = '` + f.learner + `'`:     1,
			`SELECT count(*) FROM facilityuser`:                                    1,
			`SELECT count(*) FROM classroom`:                                       1,
			`SELECT count(*) FROM contentlog WHERE user_id != '` + f.learner + `'`: 0,
			`SELECT count(*) FROM adminnote`:                                       0,
		} {
			if n := home.count(q); n != want {
				t.Errorf("%s: %s = %d, want %d", when, q, n, want)
			}
		}
	}

	// Facility exports for the tablet's manifest: only what it may read.
	home.manifest(path("home.manifest"))
	e := fac.export(path("for-home.bundle"), path("home.manifest"))
	if !slices.Equal(sorted(e.Filter), sorted(read)) {
		t.Errorf("export for home: filter %q, want %q", e.Filter, read)
	}
	st := inspect(t, path("for-home.bundle"))
	for p := range st.Partitions {
		if !read.Contains(p) {
			t.Errorf("bundle for home carries partition %s", p)
		}
	}
	if st.Records != 4 || e.Records != 4 { // the dataset, the classroom, the learner, the learner's log
		t.Errorf("bundle for home: %d records %v", st.Records, st.Models)
	}
	r := home.mustImport(path("for-home.bundle"))
	if r.Store.Refused != 0 || r.Store.Deserialize.Pending != 0 {
		t.Errorf("home import: %+v", r.Store)
	}
	holdsOnlyItsOwn("after the bundle for home")
	if n := home.count(`SELECT count(*) FROM contentlog WHERE id = ?`, f.learnerLog); n != 1 {
		t.Errorf("the learner's log did not reach home")
	}

	// A bundle for anyone carries the whole facility: home refuses what it
	// may not read.
	fac.export(path("for-anyone.bundle"), "")
	r = home.mustImport(path("for-anyone.bundle"))
	if r.Store.Refused != 4 {
		t.Errorf("home refused %d records of the bundle for anyone, want 4 (two users, a log, a note): %+v", r.Store.Refused, r.Store.Refusals)
	}
	for _, rf := range r.Store.Refusals {
		if read.Contains(rf.Partition) {
			t.Errorf("refused a record it may read: %+v", rf)
		}
	}
	holdsOnlyItsOwn("after the bundle for anyone")

	// The learner works; the tablet's export carries only its write scope.
	newLog := ids.Random()
	home.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, 'c9', 0.3)`, newLog, f.dataset, f.learner)
	home.exec(`UPDATE contentlog SET progress = 0.6 WHERE id = ?`, f.learnerLog)
	e = home.export(path("from-home.bundle"), "")
	if !slices.Equal(sorted(e.Filter), sorted(write)) {
		t.Errorf("home's export: filter %q, want its write scope %q", e.Filter, write)
	}
	st = inspect(t, path("from-home.bundle"))
	if !slices.Equal(sorted(st.Header.Filter), sorted(write)) {
		t.Errorf("home's bundle: header filter %q", st.Header.Filter)
	}
	if len(st.Partitions) != 1 || st.Partitions[write[0]] != 2 || st.Records != 2 {
		t.Errorf("home's bundle: partitions %v, %d records", st.Partitions, st.Records)
	}
	r = fac.mustImport(path("from-home.bundle"))
	if r.Store.Refused != 0 || r.Store.New != 1 || r.Store.FastForward != 1 {
		t.Errorf("facility import of home's bundle: %+v", r.Store)
	}
	if n := fac.count(`SELECT count(*) FROM contentlog WHERE (id = ? AND progress = 0.3) OR (id = ? AND progress = 0.6)`, newLog, f.learnerLog); n != 2 {
		t.Errorf("the learner's work did not reach facility")
	}

	// A bundle signed by the tablet that carries another learner's log.
	chain, err := home.db.Chain(t.Context(), home.cert)
	if err != nil {
		t.Fatal(err)
	}
	inst := home.instance()
	legit := ids.Random()
	recs := []bundle.Record{
		logRecord(legit, f.dataset, f.learner, "c10", 0.4, inst, 1000),
		logRecord(f.otherLog, f.dataset, f.other, "c1", 0.01, inst, 1001),
	}
	writeBundle(t, path("forged.bundle"), bundle.Header{Profile: "facilitydata", SenderInstance: inst, SenderCert: home.cert,
		Chain: chain, Filter: write}, home.ownCert(home.cert).PrivateKey, recs)
	before := dump(t, fac.app, []string{"contentlog", "morango_store", "morango_recordmaxcounter"})
	r = fac.mustImport(path("forged.bundle"))
	if r.Store.Refused != 1 || len(r.Store.Refusals) != 1 || r.Store.New != 1 {
		t.Fatalf("forged bundle: %+v", r.Store)
	}
	if rf := r.Store.Refusals[0]; rf.ID != f.otherLog || rf.Partition != f.dataset+":user-rw:"+f.other || rf.ModelName != "contentlog" || rf.Reason == "" {
		t.Errorf("refusal: %+v", rf)
	}
	after := dump(t, fac.app, []string{"contentlog", "morango_store", "morango_recordmaxcounter"})
	for tb, rows := range before {
		for _, row := range rows {
			if strings.Contains(row, f.otherLog) && !slices.Contains(after[tb], row) {
				t.Errorf("the other learner's log changed in %s: %s", tb, row)
			}
		}
	}
	for tb, rows := range after {
		for _, row := range rows {
			if strings.Contains(row, inst) && strings.Contains(row, f.otherLog) {
				t.Errorf("the forged version reached %s: %s", tb, row)
			}
		}
	}
	if n := fac.count(`SELECT count(*) FROM contentlog WHERE id = ? AND progress = 0.75`, f.otherLog); n != 1 {
		t.Errorf("the other learner's log changed in the app")
	}
	if n := fac.count(`SELECT count(*) FROM contentlog WHERE id = ?`, legit); n != 1 {
		t.Errorf("the learner's own record of the same bundle was not merged")
	}
}

// bundleLayout locates the parts of a bundle file (docs/bundle-format.md).
type bundleLayout struct {
	headerEnd  int // the body starts here
	frame      int // the first chunk's frame
	frameLen   int
	trailer    int // T: the digest starts here
	signature  int
	signatureN int
}

func layout(t *testing.T, b []byte) bundleLayout {
	t.Helper()
	var l bundleLayout
	l.headerEnd = 14 + int(binary.BigEndian.Uint32(b[10:14]))
	l.frameLen = int(binary.BigEndian.Uint32(b[l.headerEnd : l.headerEnd+4]))
	l.frame = l.headerEnd + 12
	// The test keys are 2048-bit: 256-byte signatures.
	if n := 256; int(binary.BigEndian.Uint16(b[len(b)-n-2:len(b)-n])) == n {
		l.signature, l.signatureN = len(b)-n, n
	}
	if l.signatureN == 0 || l.frameLen == 0 {
		t.Fatalf("bundle layout not understood: %+v", l)
	}
	l.trailer = l.signature - 2 - 32
	if end := b[l.trailer-12 : l.trailer]; !bytes.Equal(end, make([]byte, 12)) {
		t.Fatalf("no end chunk before the trailer at %d", l.trailer)
	}
	return l
}

// nextHex changes a hex digit into another.
func nextHex(c byte) byte {
	const digits = "0123456789abcdef"
	return digits[(strings.IndexByte(digits, c)+1)%16]
}

// hasHint reports whether err carries a line telling the user what to do.
func hasHint(err error) bool { return hintOf(err) != "" }

// hintOf is the line err carries telling the user what to do, or "".
func hintOf(err error) string {
	var h interface{ Hint() string }
	if errors.As(err, &h) {
		return h.Hint()
	}
	return ""
}

// TestRejectedBundles imports, into a device that already holds data, one
// bundle per way a bundle can be wrong. Each is refused with its own error
// and leaves every table as it was; the failed attempt is only recorded as
// an errored, inactive transfer session.
func TestRejectedBundles(t *testing.T) {
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	fac := newDevice(t, "facility")
	fac.root()
	f := seedFacility(fac)
	city := newDevice(t, "city")
	grant(t, fac, city, "full-facility", map[string]string{"dataset_id": f.dataset})
	home := newDevice(t, "home")
	grant(t, fac, home, "single-user", map[string]string{"dataset_id": f.dataset, "user_id": f.learner})

	fac.export(path("first.bundle"), "")
	city.mustImport(path("first.bundle"))
	fac.exec(`UPDATE contentlog SET progress = 0.95 WHERE id = ?`, f.otherLog)
	fac.exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES (?, ?, 'second term')`, ids.Random(), f.dataset)
	city.manifest(path("city.manifest"))
	if e := fac.export(path("good.bundle"), path("city.manifest")); e.Records != 2 {
		t.Fatalf("good bundle: %d records", e.Records)
	}
	good, err := os.ReadFile(path("good.bundle"))
	if err != nil {
		t.Fatal(err)
	}
	l := layout(t, good)

	// Bundles from elsewhere.
	other := newDevice(t, "other-facility")
	other.root()
	seedFacility(other)
	other.export(path("untrusted.bundle"), "")
	alien := newDeviceProfile(t, "alien", "otherapp")
	alien.root()
	alien.exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES (?, ?, 'x')`, ids.Random(), alien.cert)
	alien.export(path("wrong-profile.bundle"), "")
	note := func(inst string) []bundle.Record {
		id := ids.Random()
		return []bundle.Record{{ModelUUID: id, Profile: "facilitydata", ModelName: "adminnote", Partition: f.dataset,
			Serialized:        fmt.Sprintf(`{"id":%q,"dataset_id":%q,"body":"forged"}`, id, f.dataset),
			LastSavedInstance: inst, LastSavedCounter: 7, RMC: []bundle.Counter{{Instance: inst, Counter: 7}}}}
	}
	// Facility's chain, signed with City's key.
	facChain, err := fac.db.Chain(t.Context(), fac.cert)
	if err != nil {
		t.Fatal(err)
	}
	writeBundle(t, path("wrong-signer.bundle"), bundle.Header{Profile: "facilitydata", SenderInstance: fac.instance(),
		SenderCert: fac.cert, Chain: facChain, Filter: []string{f.dataset}}, city.ownCert(city.cert).PrivateKey, note(fac.instance()))
	// The learner's tablet claims the whole facility.
	homeChain, err := home.db.Chain(t.Context(), home.cert)
	if err != nil {
		t.Fatal(err)
	}
	writeBundle(t, path("outside-scope.bundle"), bundle.Header{Profile: "facilitydata", SenderInstance: home.instance(),
		SenderCert: home.cert, Chain: homeChain, Filter: []string{f.dataset}}, home.ownCert(home.cert).PrivateKey, note(home.instance()))

	// The learner's tablet makes itself a full-facility certificate under
	// the root, signed with its own key instead of the root's.
	key, err := certs.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	forgedCert := &certs.Certificate{ParentID: fac.cert, Profile: "facilitydata", ScopeDefinitionID: "full-facility",
		ScopeVersion: 1, Salt: ids.Random(), PublicKey: &key.PublicKey}
	if forgedCert.ScopeParams, err = certs.ParamsJSON(map[string]string{"dataset_id": f.dataset}, "dataset_id"); err != nil {
		t.Fatal(err)
	}
	forgedCert.ID = forgedCert.ComputeID()
	forgedCert.Serialized = forgedCert.Serialize()
	if forgedCert.Signature, err = certs.Sign(key, []byte(forgedCert.Serialized)); err != nil {
		t.Fatal(err)
	}
	writeBundle(t, path("forged-chain.bundle"), bundle.Header{Profile: "facilitydata", SenderInstance: home.instance(),
		SenderCert: forgedCert.ID, Chain: append(slices.Clone(facChain), forgedCert.Link()), Filter: []string{f.dataset}},
		key, note(home.instance()))

	mutate := func(fn func(b []byte) []byte) []byte { return fn(slices.Clone(good)) }
	flip := func(i int) []byte { return mutate(func(b []byte) []byte { b[i] ^= 0x55; return b }) }
	read := func(name string) []byte {
		b, err := os.ReadFile(path(name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	idAt := bytes.Index(good[:l.headerEnd], []byte(`"transfer_id":"`)) + len(`"transfer_id":"`)
	type vector struct {
		name string
		file []byte
		want error
	}
	vectors := []vector{
		{"bad magic", mutate(func(b []byte) []byte { b[3] = 'X'; return b }), bundle.ErrBadMagic},
		{"a manifest", read("city.manifest"), bundle.ErrBadMagic},
		{"version 2", mutate(func(b []byte) []byte { b[9] = 2; return b }), bundle.ErrUnsupportedVersion},
		{"header syntax flipped", flip(14), bundle.ErrMalformed},
		{"header id digit changed", mutate(func(b []byte) []byte { b[idAt+5] = nextHex(b[idAt+5]); return b }), bundle.ErrHashMismatch},
		{"body frame flipped", flip(l.frame + l.frameLen/2), bundle.ErrMalformed},
		{"digest flipped", flip(l.trailer + 7), bundle.ErrHashMismatch},
		{"signature flipped", flip(l.signature + 100), bundle.ErrBadSignature},
		{"wrong signer", read("wrong-signer.bundle"), bundle.ErrBadSignature},
		{"chain with a certificate its parent did not sign", read("forged-chain.bundle"), certs.ErrSignatureInvalid},
		{"untrusted root", read("untrusted.bundle"), ErrUntrustedRoot},
		{"filter outside the signer's write scope", read("outside-scope.bundle"), ErrOutsideScope},
		{"wrong profile", read("wrong-profile.bundle"), ErrWrongProfile},
	}
	for _, cut := range []int{0, 5, 12, 14 + (l.headerEnd-14)/2, l.headerEnd, l.headerEnd + 6, l.frame + l.frameLen/2,
		l.trailer - 12, l.trailer - 1, l.trailer, l.trailer + 20, l.signature - 1, l.signature + 128, len(good) - 1} {
		vectors = append(vectors, vector{fmt.Sprintf("truncated at %d of %d", cut, len(good)), good[:cut], bundle.ErrTruncated})
	}
	sentinels := []error{bundle.ErrBadMagic, bundle.ErrUnsupportedVersion, bundle.ErrTruncated, bundle.ErrMalformed,
		bundle.ErrTooLarge, bundle.ErrCountMismatch, bundle.ErrHashMismatch, bundle.ErrBadSignature, bundle.ErrTrailingData,
		certs.ErrSignatureInvalid, certs.ErrIDInvalid, certs.ErrChainBroken, certs.ErrScopeNotSubset, certs.ErrMalformed,
		ErrUntrustedRoot, ErrOutsideScope, ErrWrongProfile, ErrNoReadScope, store.ErrAlreadyApplied}
	sessionTables := []string{"morango_transfersession", "morango_syncsession"}

	for i, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			p := path(fmt.Sprintf("vector-%02d.bundle", i))
			if err := os.WriteFile(p, v.file, 0o644); err != nil {
				t.Fatal(err)
			}
			tables := allTables(t, city.app)
			before := dump(t, city.app, tables)
			_, err := city.importBundle(p)
			if err == nil {
				t.Fatal("imported")
			}
			if !errors.Is(err, v.want) {
				t.Fatalf("error %q, want %q", err, v.want)
			}
			for _, s := range sentinels {
				if s != v.want && errors.Is(err, s) {
					t.Errorf("error %q is also %q", err, s)
				}
			}
			if !hasHint(err) {
				t.Errorf("error %q has no hint", err)
			}
			t.Logf("%v", err)
			after := dump(t, city.app, tables)
			for _, tb := range tables {
				if slices.Contains(sessionTables, tb) {
					for _, row := range before[tb] {
						if !slices.Contains(after[tb], row) {
							t.Errorf("%s: row changed: %s", tb, row)
						}
					}
					continue
				}
				if !slices.Equal(before[tb], after[tb]) {
					t.Errorf("%s changed:\n%s", tb, diffStates(map[string][]string{tb: before[tb]}, map[string][]string{tb: after[tb]}))
				}
			}
			if n := city.count(`SELECT count(*) FROM morango_transfersession WHERE active OR transfer_stage_status NOT IN ('completed', 'errored')`); n != 0 {
				t.Errorf("%d transfer sessions left active", n)
			}
		})
	}

	// The good bundle still imports, once.
	r := city.mustImport(path("good.bundle"))
	if r.Store.Received != 2 || r.Store.Refused != 0 {
		t.Errorf("good bundle: %+v", r.Store)
	}
	if _, err := city.importBundle(path("good.bundle")); !IsAlreadyApplied(err) {
		t.Errorf("importing the good bundle again: %v", err)
	}
}

// TestExportInspect reads a bundle written by Export with bundle.Inspect:
// its counts match what Export reported. The format's own vectors are
// pinned in bundle/testdata/golden.
func TestExportInspect(t *testing.T) {
	fac := newDevice(t, "facility")
	fac.root()
	seedFacility(fac)
	p := filepath.Join(t.TempDir(), "all.bundle")
	e := fac.export(p, "")
	st := inspect(t, p)
	if st.Kind != "bundle" || st.Version != bundle.Version {
		t.Errorf("kind %s version %d", st.Kind, st.Version)
	}
	if st.Records != e.Records || st.Header.Records != e.Records || e.Records != 8 {
		t.Errorf("records: inspected %d, header %d, export %d", st.Records, st.Header.Records, e.Records)
	}
	if fmt.Sprint(st.Models) != fmt.Sprint(e.Counts) || fmt.Sprint(st.Header.Counts) != fmt.Sprint(e.Counts) {
		t.Errorf("counts: inspected %v, header %v, export %v", st.Models, st.Header.Counts, e.Counts)
	}
	var sum int64
	for p, n := range st.Partitions {
		if !certs.Filter(e.Filter).Contains(p) {
			t.Errorf("partition %s outside the filter %q", p, e.Filter)
		}
		sum += n
	}
	if sum != e.Records || st.Chunks < 1 || st.Size == 0 {
		t.Errorf("partitions add up to %d; %d chunks; %d bytes", sum, st.Chunks, st.Size)
	}
	if st.Header.TransferID != e.TransferID || !slices.Equal(st.Header.Filter, e.Filter) {
		t.Errorf("header: transfer %s filter %q; export: %s %q", st.Header.TransferID, st.Header.Filter, e.TransferID, e.Filter)
	}
}
