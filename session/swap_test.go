package session

import (
	"errors"
	"io"
	"io/fs"
	"strings"
	"sync"
	"testing"

	"github.com/morango-sync/morango/bundle"
	"github.com/morango-sync/morango/ids"
)

// swappingStick serves another file in place of path from its open number
// after+1 on: a file replaced, or still being copied, while it is read.
type swappingStick struct {
	bundle.OSFS
	path, other string
	after       int
	mu          sync.Mutex
	opens       int
}

func (s *swappingStick) Open(name string) (io.ReadCloser, error) {
	if name != s.path {
		return s.OSFS.Open(name)
	}
	s.mu.Lock()
	s.opens++
	n := s.opens
	s.mu.Unlock()
	if n > s.after {
		return s.OSFS.Open(s.other)
	}
	return s.OSFS.Open(name)
}

// An import reads the bundle three times (its header and digest, a
// verifying pass, an applying pass). Another bundle of the same signer put
// in its place between two reads verifies on its own; the import must
// refuse it, and leave the database as it was, instead of recording the
// first as applied with the records of the second.
func TestBundleChangedWhileRead(t *testing.T) {
	h := newHostile(t) // city has applied first.bundle
	note := ids.Random()
	h.fac.exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES (?, ?, 'new note')`, note, h.f.dataset)
	second := h.path("second.bundle")
	h.fac.export(second, "")

	for after := 1; after <= 2; after++ {
		before := h.city.syncState()
		transfers := h.city.count(`SELECT count(*) FROM morango_transfersession WHERE active = 0 AND error = ''`)
		stick := &swappingStick{path: second, other: h.path("first.bundle"), after: after}
		_, err := Import(t.Context(), h.city.db, &DiskConnection{FS: stick, Bundle: second}, ImportOptions{})
		if err == nil || !strings.Contains(err.Error(), "changed while it was being read") || !hasHint(err) {
			t.Fatalf("the file replaced after %d reads: %v, want an error saying it changed, with a hint", after, err)
		}
		var fe *fs.PathError
		if errors.As(err, &fe) {
			t.Errorf("reported as a path error: %v", err)
		}
		if d := diffStates(before, h.city.syncState()); d != "" {
			t.Fatalf("the refused import changed the database:\n%s", d)
		}
		if n := h.city.count(`SELECT count(*) FROM morango_transfersession WHERE active = 0 AND error = ''`); n != transfers {
			t.Fatalf("%d transfers applied, was %d", n, transfers)
		}
	}
	// The genuine file still imports.
	r := h.city.mustImport(second)
	if r.Store.New != 1 || h.city.count(`SELECT count(*) FROM adminnote WHERE id = ?`, note) != 1 {
		t.Fatalf("importing the genuine bundle: %+v", r.Store)
	}
}
