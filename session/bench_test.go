package session

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/morango-sync/morango/certs"
	"github.com/morango-sync/morango/internal/school"
	"github.com/morango-sync/morango/profile"
	"github.com/morango-sync/morango/store"
)

// Whole transfers over bundle files, on the sample school app:
//
//	go test ./session -run '^$' -bench . -benchtime 3x
//
// 'morango bench' measures the same stages at any size, against the floor
// of plain SQL inserts (docs/performance.md).

// benchDevice is a device of the school app.
type benchDevice struct {
	path string
	app  *sql.DB
	db   *store.DB
	cert string
}

func newBenchDevice(tb testing.TB, dir, name string, p *profile.Profile) *benchDevice {
	tb.Helper()
	d := &benchDevice{path: filepath.Join(dir, name+".sqlite3")}
	var err error
	if d.app, err = sql.Open("sqlite", d.path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)"); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.app.Close() })
	if _, err := d.app.Exec(school.Schema()); err != nil {
		tb.Fatal(err)
	}
	if d.db, err = store.Init(context.Background(), d.path, p, &store.Options{SystemID: "bench-" + name, NodeID: "node-" + name}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.db.Close() })
	return d
}

// benchPair makes a facility device holding a school of n records under a
// full-facility root certificate, and a second device with a certificate
// granted by it: what 'morango cert root / request / grant / import' do.
func benchPair(tb testing.TB, dir string, n int) (a *benchDevice, newB func(name string) *benchDevice) {
	tb.Helper()
	ctx := context.Background()
	p, err := profile.Parse(school.ProfileJSON())
	if err != nil {
		tb.Fatal(err)
	}
	def, _ := p.ScopeDefinition("full-facility")
	a = newBenchDevice(tb, dir, "a", p)
	root, err := certs.NewRoot(def, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if err := a.db.SaveCertificate(ctx, root, certs.PrivateKeyString(root.PrivateKey), true); err != nil {
		tb.Fatal(err)
	}
	a.cert = root.ID
	if _, err := school.Generate(ctx, a.app, root.ID, school.Options{Seed: 1, Records: n}); err != nil {
		tb.Fatal(err)
	}
	newB = func(name string) *benchDevice {
		b := newBenchDevice(tb, dir, name, p)
		req, key, err := certs.NewRequest(def, map[string]string{def.PrimaryScopeParamKey: root.ID}, p.Name)
		if err != nil {
			tb.Fatal(err)
		}
		child, err := root.Grant(req, p)
		if err != nil {
			tb.Fatal(err)
		}
		chain, err := a.db.Chain(ctx, root.ID)
		if err != nil {
			tb.Fatal(err)
		}
		rootCert, err := certs.VerifyChain(chain, p)
		if err != nil {
			tb.Fatal(err)
		}
		if err := b.db.SaveCertificate(ctx, rootCert[0], "", true); err != nil {
			tb.Fatal(err)
		}
		if err := b.db.SaveCertificate(ctx, child, certs.PrivateKeyString(key), false); err != nil {
			tb.Fatal(err)
		}
		b.cert = child.ID
		return b
	}
	return a, newB
}

func BenchmarkTransfer(b *testing.B) {
	const n = 20000
	ctx := context.Background()
	dir := b.TempDir()
	a, newB := benchPair(b, dir, n)
	full := filepath.Join(dir, "full.bundle")
	// The first export serializes the school; the benchmark measures
	// exports of a serialized store.
	if _, err := Export(ctx, a.db, &DiskConnection{Bundle: full}, ExportOptions{CertID: a.cert}); err != nil {
		b.Fatal(err)
	}
	b.Run(fmt.Sprintf("export/%d", n), func(b *testing.B) {
		for b.Loop() {
			res, err := Export(ctx, a.db, &DiskConnection{Bundle: full}, ExportOptions{CertID: a.cert})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(res.Records), "records")
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
		if fi, err := os.Stat(full); err == nil {
			b.ReportMetric(float64(fi.Size())/n, "bytes/record")
		}
	})
	b.Run(fmt.Sprintf("import/%d", n), func(b *testing.B) {
		i := 0
		for b.Loop() {
			b.StopTimer()
			dst := newB(fmt.Sprintf("b%d", i))
			i++
			b.StartTimer()
			res, err := Import(ctx, dst.db, &DiskConnection{Bundle: full}, ImportOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if res.Store.Refused > 0 || res.Store.Deserialize.Pending > 0 {
				b.Fatalf("%d refused, %d pending", res.Store.Refused, res.Store.Deserialize.Pending)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
	})
	b.Run(fmt.Sprintf("export-nothing/%d", n), func(b *testing.B) {
		dst := newB("peer")
		if _, err := Import(ctx, dst.db, &DiskConnection{Bundle: full}, ImportOptions{}); err != nil {
			b.Fatal(err)
		}
		manifest := filepath.Join(dir, "peer.manifest")
		if _, err := WriteManifest(ctx, dst.db, nil, manifest, ManifestOptions{CertID: dst.cert, Name: "peer"}); err != nil {
			b.Fatal(err)
		}
		nothing := filepath.Join(dir, "nothing.bundle")
		for b.Loop() {
			res, err := Export(ctx, a.db, &DiskConnection{Bundle: nothing, Manifest: manifest}, ExportOptions{CertID: a.cert})
			if err != nil {
				b.Fatal(err)
			}
			if res.Records != 0 {
				b.Fatalf("%d records for a peer that has everything", res.Records)
			}
		}
	})
}

// TestRerunAfterCommitFinishesSession: an import killed after its
// transaction committed, before its cleanup, leaves its transfer session
// active; running it again finds the bundle applied and marks the session
// finished.
func TestRerunAfterCommitFinishesSession(t *testing.T) {
	fac := newDevice(t, "facility")
	fac.root()
	seedFacility(fac)
	city := newDevice(t, "city")
	grant(t, fac, city, "full-facility", map[string]string{"dataset_id": fac.cert})
	path := filepath.Join(t.TempDir(), "full.bundle")
	fac.export(path, "")
	city.mustImport(path)

	// What a kill between the commit and the cleanup leaves.
	var id string
	if err := city.app.QueryRow(`SELECT id FROM morango_transfersession WHERE NOT push`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	city.exec(`UPDATE morango_transfersession SET active = 1, transfer_stage = 'deserializing', transfer_stage_status = 'completed' WHERE id = ?`, id)
	city.exec(`UPDATE morango_syncsession SET active = 1 WHERE id = (SELECT sync_session_id FROM morango_transfersession WHERE id = ?)`, id)
	if n := city.count(`SELECT count(*) FROM morango_transfersession WHERE active`); n != 1 {
		t.Fatalf("%d active transfer sessions, want the interrupted one", n)
	}

	if _, err := city.importBundle(path); !IsAlreadyApplied(err) {
		t.Fatalf("second import: %v, want already applied", err)
	}
	if n := city.count(`SELECT count(*) FROM morango_transfersession WHERE active`); n != 0 {
		t.Errorf("%d transfer sessions still active", n)
	}
	if n := city.count(`SELECT count(*) FROM morango_syncsession WHERE active`); n != 0 {
		t.Errorf("%d sync sessions still active", n)
	}
	if n := city.count(`SELECT count(*) FROM morango_transfersession WHERE id = ? AND transfer_stage = 'cleanup' AND transfer_stage_status = 'completed'`, id); n != 1 {
		t.Errorf("the interrupted session is not recorded as cleaned up")
	}
}
