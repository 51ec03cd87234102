package session

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/morango-sync/morango/bundle"
	"github.com/morango-sync/morango/ids"
)

// fullReadFS counts, per file whose name holds part, the openings read to
// their end.
type fullReadFS struct {
	bundle.OSFS
	part string

	mu       sync.Mutex
	opened   int
	readFull int
}

type eofCounter struct {
	io.ReadCloser
	fs   *fullReadFS
	seen bool
}

func (r *eofCounter) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) && !r.seen {
		r.seen = true
		r.fs.mu.Lock()
		r.fs.readFull++
		r.fs.mu.Unlock()
	}
	return n, err
}

func (f *fullReadFS) Open(name string) (io.ReadCloser, error) {
	rc, err := f.OSFS.Open(name)
	if err != nil || !strings.Contains(filepath.Base(name), f.part) {
		return rc, err
	}
	f.mu.Lock()
	f.opened++
	f.mu.Unlock()
	return &eofCounter{ReadCloser: rc, fs: f}, nil
}

// TestRestoredSteadyExchangeDoesNotReadFormerBundleWhole: after a restore
// from a backup taken while an export ran, the former instance's bundle
// for the city stays on the stick until the city comes back (nobody writes
// under that instance again). Once the restored database has renewed and
// imported it, every later exchange only glances at its header (it is
// already applied), instead of reading and verifying it whole at every
// visit, as the restored file knows its transfer as one that never
// completed.
func TestRestoredSteadyExchangeDoesNotReadFormerBundleWhole(t *testing.T) {
	stick := t.TempDir()
	fac, city, f := facilityAnd(t, "city")
	for range 2 {
		visitStick(t, stick, fac, fac.db)
		visitStick(t, stick, city, city.db)
	}
	backup := filepath.Join(t.TempDir(), "backup.sqlite3")
	took := false
	obs := func(e Event) {
		if took || !e.Push || e.Stage != Serializing || e.Kind != EventStarted {
			return
		}
		took = true
		if _, err := fac.app.Exec(`VACUUM INTO ?`, backup); err != nil {
			t.Fatal(err)
		}
		tx, err := fac.app.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3000 {
			if _, err := tx.Exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, ?, 0.5)`,
				ids.Random(), f.dataset, f.learner, "during-"+ids.Random()+string(rune('a'+i%26))); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	old := fac.instance()
	if _, err := Exchange(t.Context(), fac.db, stick, ExchangeOptions{CertID: fac.cert, Observer: obs}); err != nil || !took {
		t.Fatalf("exchange: %v (backup taken: %v)", err, took)
	}
	db, _ := restore(t, fac, backup, old)
	for range 2 {
		visitStick(t, stick, fac, db) // the city does not come back to remove it
	}
	in, err := db.Instance(t.Context())
	if err != nil || in.ID == old {
		t.Fatalf("the restored facility did not renew: %v", err)
	}
	former := BundleName(old, city.instance())
	fi, err := os.Stat(filepath.Join(stick, former))
	if err != nil {
		t.Fatalf("the former instance's bundle is gone from the stick: %v", err)
	}
	fs := &fullReadFS{part: old + "-to-"}
	r, err := Exchange(t.Context(), db, stick, ExchangeOptions{CertID: fac.cert, FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	for _, fr := range r.Files {
		if fr.File == former {
			t.Logf("%s: %s %s", fr.File[:8], fr.Action, fr.Reason)
		}
	}
	if fs.readFull > 0 {
		t.Errorf("a steady exchange of the restored facility opened the former instance's bundle (%d bytes, already applied) %d times and read it whole %d times",
			fi.Size(), fs.opened, fs.readFull)
	}
}
