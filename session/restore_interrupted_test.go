package session

import (
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/morango-sync/morango/bundle"
)

// failNthOpenFS fails the nth opening (from 1) of a file whose name holds
// part, as a stick pulled out, or a process killed, while that file is
// read would.
type failNthOpenFS struct {
	bundle.OSFS
	part string
	nth  int

	mu     sync.Mutex
	opened int
}

func (f *failNthOpenFS) Open(name string) (io.ReadCloser, error) {
	if strings.Contains(name, f.part) {
		f.mu.Lock()
		f.opened++
		n := f.opened
		f.mu.Unlock()
		if n == f.nth {
			return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EIO}
		}
	}
	return f.OSFS.Open(name)
}

// TestRestoredImportOfFormerOwnBundleIsRetried checks that a restored
// database whose import of its own former bundle did not finish imports it
// at its next exchange. The facility's week is on the stick only, in its own
// bundle for the city (the city did not visit that week); the backup is
// restored. Its first exchange renews the instance (committed in a
// transaction of its own) and imports that bundle. When the import fails
// (the stick is pulled out while it reads the bundle), the next exchange
// still takes the former instance as this database's own, although the
// renewal was done by the earlier run, and imports the bundle: the week
// comes back, as it does after an uninterrupted exchange.
func TestRestoredImportOfFormerOwnBundleIsRetried(t *testing.T) {
	for _, interrupted := range []bool{false, true} {
		name := "uninterrupted"
		if interrupted {
			name = "interrupted"
		}
		t.Run(name, func(t *testing.T) {
			stick := t.TempDir()
			fac, city, _, db, app, old := restoredFacilityWeek(t, stick, false, nil)
			own := BundleName(old, city.instance())
			if _, err := os.Stat(stick + "/" + own); err != nil {
				t.Fatalf("no bundle of the former instance for the city on the stick: %v", err)
			}
			if interrupted {
				// Openings of the bundle: the folder scan (whose header read
				// serves the bundle loop too), the import's header and digest,
				// then its verifying pass, which fails.
				fs := &failNthOpenFS{part: own, nth: 3}
				r, err := Exchange(t.Context(), db, stick, ExchangeOptions{CertID: fac.cert, FS: fs})
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("first exchange (interrupted): %v", describeFiles(r))
			}
			r := visitStick(t, stick, fac, db)
			t.Logf("exchange: %v", describeFiles(r))
			if n := count(t, app, `SELECT count(*) FROM contentlog WHERE content_id LIKE 'week-%'`); n != 5 {
				t.Errorf("facility: %d of the 5 logs of its week before the failure are back after the exchange (its own former bundle on the stick holds them)", n)
			}
		})
	}
}
