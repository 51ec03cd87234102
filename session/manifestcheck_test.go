package session

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/morango-sync/morango/bundle"
)

// flipAtFS is flipFS with the damaged byte at offset at.
type flipAtFS struct {
	bundle.OSFS
	at int64
}

func (f flipAtFS) CreateTemp(dir, pattern string) (bundle.File, error) {
	file, err := f.OSFS.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return &flipAtFile{File: file, at: f.at}, nil
}

type flipAtFile struct {
	bundle.File
	off, at int64
}

func (f *flipAtFile) Write(p []byte) (int, error) {
	if f.off <= f.at && f.at < f.off+int64(len(p)) {
		q := append([]byte(nil), p...)
		q[f.at-f.off] ^= 0x40
		p = q
	}
	n, err := f.File.Write(p)
	f.off += int64(n)
	return n, err
}

// A bundle is read back from the stick before it takes its name, so that a
// stick that silently damages what it stores fails the export and leaves
// the earlier bundle whole (TestStickDamagesSilently). A manifest is too:
// had a damaged manifest replaced the good one, every other device would
// refuse it and write no bundle for this device, which would believe its
// visit went well. The write fails, and the earlier manifest stays.
func TestStickDamagesManifestSilently(t *testing.T) {
	a, b := newDevice(t, "a"), newDevice(t, "b")
	a.root()
	grant(t, a, b, "full-facility", map[string]string{"dataset_id": a.cert})
	seedFacility(a)
	dir := t.TempDir()
	path := filepath.Join(dir, ManifestName(b.instance()))
	b.manifest(path)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = WriteManifest(t.Context(), b.db, flipAtFS{at: int64(len(good) / 2)}, path, ManifestOptions{CertID: b.cert, Name: b.name})
	now, rerr := os.ReadFile(path)
	if rerr != nil {
		t.Fatal(rerr)
	}
	if err == nil {
		t.Errorf("writing a manifest to a stick that damages it succeeded")
	}
	if !bytes.Equal(now, good) {
		// What a peer makes of it.
		_, perr := Export(t.Context(), a.db, &DiskConnection{Bundle: filepath.Join(dir, "a-to-b.bundle"), Manifest: path},
			ExportOptions{CertID: a.cert})
		t.Errorf("the damaged manifest replaced the good one; a peer's export for it: %v", perr)
	}
}
