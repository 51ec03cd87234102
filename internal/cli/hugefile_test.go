package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// sparse makes a file of size bytes that takes no room on disk: a chain or
// request file as large as a hostile stick may hold.
func sparse(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// allocated runs fn and returns the bytes it allocated.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// A chain file is at most 1 MiB and a request 64 KiB (docs/security.md,
// Limits: certs.ParseChain, certs.ParseRequest). A file from a stick that
// is far larger must be refused for its size without being read whole
// into memory by 'cert import', 'cert verify' or 'cert grant': a 4 GiB
// one would exhaust a small device's memory before it was refused.
func TestHugeCertificateFilesAreRefusedCheaply(t *testing.T) {
	dir := t.TempDir()
	laptop := schoolDB(t, dir, "laptop")
	out, err := morango(t, "cert", "root", "--db", laptop, "--scope", "full-facility", "--json")
	if err != nil {
		t.Fatal(err, out)
	}
	var root struct{ ID string }
	if err := json.Unmarshal([]byte(out), &root); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge.chain")
	sparse(t, huge, 512<<20)
	const limit = 64 << 20
	for _, args := range [][]string{
		{"cert", "import", "--db", laptop, huge},
		{"cert", "verify", "--profile", filepath.Join(dir, "profile.json"), huge},
		{"cert", "grant", "--db", laptop, "--parent", root.ID, huge, "-o", filepath.Join(dir, "out.chain")},
	} {
		var err error
		n := allocated(func() { _, err = morango(t, args...) })
		if err == nil {
			t.Errorf("%v: a 512 MiB file was accepted", args[:2])
		}
		if n > limit {
			t.Errorf("%v: refusing a 512 MiB file allocated %d MiB, want under %d MiB", args[:2], n>>20, limit>>20)
		}
	}
}
