package session

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/morango-sync/morango/bundle"
	"github.com/morango-sync/morango/ids"
)

// hookFS is the OS's filesystem that runs before, once, just before the
// first rename of a temporary file whose final name ends with suffix: the
// moment another process would see the temporary file on the stick.
type hookFS struct {
	bundle.OSFS
	suffix string
	before func()
	once   sync.Once
}

func (h *hookFS) Rename(oldpath, newpath string) error {
	if bundle.IsTemp(oldpath) && strings.HasSuffix(newpath, h.suffix) {
		h.once.Do(h.before)
	}
	return h.OSFS.Rename(oldpath, newpath)
}

// TestConcurrentExchangesOnOneStick checks that two exchanges on one stick
// folder at once (two devices plugged into one PC) do not break each
// other: City's exchange, started while Facility's is writing its bundle
// for City, leaves Facility's temporary file alone, and Facility's
// exchange writes that bundle without a failure.
func TestConcurrentExchangesOnOneStick(t *testing.T) {
	stick := t.TempDir()
	fac, city, f := facilityAnd(t, "city")
	for _, d := range []*device{fac, city, fac, city} {
		if _, err := Exchange(t.Context(), d.db, stick, ExchangeOptions{CertID: d.cert, Name: d.name}); err != nil {
			t.Fatalf("%s: %v", d.name, err)
		}
	}
	// Facility has new work for City.
	fac.exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES (?, ?, 'new')`, ids.Random(), f.dataset)

	var cityRes *ExchangeResult
	var cityErr error
	fs := &hookFS{suffix: BundleName(fac.instance(), city.instance()), before: func() {
		cityRes, cityErr = Exchange(t.Context(), city.db, stick, ExchangeOptions{CertID: city.cert, Name: city.name})
	}}
	res, err := Exchange(t.Context(), fac.db, stick, ExchangeOptions{CertID: fac.cert, Name: fac.name, FS: fs})
	if cityErr != nil {
		t.Fatalf("city: %v", cityErr)
	}
	if cityRes == nil {
		t.Fatal("city's exchange did not run while facility's bundle was being written")
	}
	for _, fr := range cityRes.Files {
		t.Logf("city: %s %s %s", fr.File, fr.Action, fr.Reason)
		if fr.Action == "removed" && bundle.IsTemp(fr.File) {
			t.Errorf("city removed %s, facility's write in progress", fr.File)
		}
	}
	if err != nil {
		t.Fatalf("facility's exchange failed because city's exchange ran at the same time: %v", err)
	}
	for _, fr := range res.Files {
		t.Logf("facility: %s %s %s", fr.File, fr.Action, fr.Reason)
		if fr.Action == "failed" {
			t.Errorf("facility: %s failed because city's exchange ran at the same time: %s", fr.File, fr.Reason)
		}
	}
}

// TestExchangeRemovesOnlyAbandonedTemps checks which temporary files an
// exchange removes: its own device's (for its manifest or its bundles), at
// any age, as only a process using its database writes those; another
// device's only once unmodified for bundle.TempMaxAge, as a younger one
// may be that device's write in progress.
func TestExchangeRemovesOnlyAbandonedTemps(t *testing.T) {
	stick := t.TempDir()
	fac, city, _ := facilityAnd(t, "city")
	for _, d := range []*device{fac, city} {
		if _, err := Exchange(t.Context(), d.db, stick, ExchangeOptions{CertID: d.cert, Name: d.name}); err != nil {
			t.Fatalf("%s: %v", d.name, err)
		}
	}
	temp := func(final string, age time.Duration) string {
		n := "." + final + ".12345" + ".morango-tmp"
		if !bundle.IsTemp(n) {
			t.Fatalf("%s is not a temporary name", n)
		}
		p := filepath.Join(stick, n)
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
		mt := time.Now().Add(-age)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
		return n
	}
	fi, ci := fac.instance(), city.instance()
	ownBundle := temp(BundleName(fi, ci), 0)
	ownManifest := temp(ManifestName(fi), 0)
	otherYoung := temp(BundleName(ci, fi), 10*time.Minute)
	otherOld := temp(ManifestName(ci), bundle.TempMaxAge+time.Minute)
	unknownOld := temp("notes.txt", 2*bundle.TempMaxAge)

	res, err := Exchange(t.Context(), fac.db, stick, ExchangeOptions{CertID: fac.cert, Name: fac.name})
	if err != nil {
		t.Fatal(err)
	}
	var removed []string
	for _, fr := range res.Files {
		if fr.Action == "removed" && bundle.IsTemp(fr.File) {
			removed = append(removed, fr.File)
		}
	}
	names, err := os.ReadDir(stick)
	if err != nil {
		t.Fatal(err)
	}
	left := map[string]bool{}
	for _, e := range names {
		left[e.Name()] = true
	}
	for _, n := range []string{ownBundle, ownManifest, otherOld, unknownOld} {
		if left[n] || !slices.Contains(removed, n) {
			t.Errorf("%s: left %v, reported removed %v; want it removed", n, left[n], slices.Contains(removed, n))
		}
	}
	if !left[otherYoung] || slices.Contains(removed, otherYoung) {
		t.Errorf("%s, another device's and 10 minutes old, was removed; want it left", otherYoung)
	}
}
