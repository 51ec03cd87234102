package session

import (
	iofs "io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/morango-sync/morango/bundle"
)

// lagFS is a shared folder whose clock (the file server's, which stamps
// the files' modification times) is behind this device's by lag.
type lagFS struct {
	bundle.OSFS
	lag time.Duration
}

type lagInfo struct {
	iofs.FileInfo
	lag time.Duration
}

func (i lagInfo) ModTime() time.Time { return i.FileInfo.ModTime().Add(-i.lag) }

func (f lagFS) Stat(name string) (iofs.FileInfo, error) {
	fi, err := f.OSFS.Stat(name)
	if err != nil {
		return nil, err
	}
	return lagInfo{fi, f.lag}, nil
}

// TestSharedFolderClockSkewKeepsWriteInProgress: two devices exchange
// through one shared folder at once (docs/cli.md: "so several devices may
// exchange through one folder at once"). The city is writing its bundle
// for the facility: its temporary file was modified a moment ago, by the
// folder's clock. The facility's clock is two hours ahead of the folder's
// (no network time on an offline site, a wrong time zone). StaleTemp
// compares the folder's modification time with this device's clock: the
// city's write in progress must not be taken for an abandoned one and
// removed, which would make the city's write fail.
func TestSharedFolderClockSkewKeepsWriteInProgress(t *testing.T) {
	stick := t.TempDir()
	fac, city, _ := facilityAnd(t, "city")
	for _, d := range []*device{fac, city} {
		visitStick(t, stick, d, d.db)
	}
	// The city's write in progress, modified just now.
	n := "." + BundleName(city.instance(), fac.instance()) + ".4242.morango-tmp"
	if err := os.WriteFile(filepath.Join(stick, n), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Exchange(t.Context(), fac.db, stick, ExchangeOptions{CertID: fac.cert, FS: lagFS{lag: 2 * time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	for _, fr := range r.Files {
		if fr.File == n {
			t.Logf("facility: %s %s", fr.Action, fr.Reason)
		}
	}
	if _, err := os.Stat(filepath.Join(stick, n)); err != nil {
		t.Errorf("the city's write in progress (modified a moment ago by the folder's clock) was removed: %v", err)
	}
}
