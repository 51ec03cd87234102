//go:build linux && (amd64 || arm64)

package bundle

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"unsafe"
)

// residentPages counts the pages of a file in the kernel's cache.
func residentPages(t *testing.T, name string) int {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(m)
	page := os.Getpagesize()
	vec := make([]byte, (len(m)+page-1)/page)
	if _, _, e := syscall.Syscall(syscall.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Skipf("mincore: %v", e)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}

// The check of a written file reads what the device holds: its pages are
// out of the kernel's cache when the check begins.
func TestCheckReadsTheDevice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.bundle")
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	var before int
	err := WriteFileChecked(OSFS{}, path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}, func(tmp string) error {
		before = residentPages(t, tmp)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pages := len(data) / os.Getpagesize()
	t.Logf("%d of %d pages in the cache as the check began", before, pages)
	if before > pages/8 {
		t.Errorf("%d of %d pages were still in the cache: the check would read the cache", before, pages)
	}
}
