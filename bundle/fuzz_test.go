package bundle

import (
	"bytes"
	"crypto/rsa"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// addGolden seeds a fuzz target with the golden files, but for the few
// large ones: the fuzzer minimizes every input it finds interesting, and
// minimizing tens of kilobytes takes minutes.
func addGolden(f *testing.F, ext string) {
	names, err := filepath.Glob(filepath.Join(goldenDir, "*"+ext))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		if len(b) <= 16<<10 {
			f.Add(b)
		}
	}
}

// maxFuzzAlloc bounds what reading any input may allocate: a chunk's
// compressed and uncompressed buffers, a header, the decoder's state.
const maxFuzzAlloc = 4*MaxChunkSize + 2*MaxHeaderSize

func allocated() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

// FuzzReader feeds arbitrary bytes to the reader. It must never panic nor
// allocate past the limits; every error must be one of the sentinels; and
// what it accepts must encode back to the same bytes: the header and every
// chunk's records always (even when the digest or signature fails), and
// the whole file when it verifies with the golden key (as age's
// FuzzMalleability does).
func FuzzReader(f *testing.F) {
	addGolden(f, ".bundle")
	addGolden(f, ".manifest")
	key := goldenKey(f)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzReader(t, key, data) })
}

func fuzzReader(t *testing.T, key *rsa.PrivateKey, data []byte) {
	{
		before := allocated()
		var plains [][]byte
		var counts []int
		r, err := NewReader(bytes.NewReader(data), &ReaderOptions{Unverified: true, Verify: keyOpts(t).Verify})
		if err != nil {
			checkSentinel(t, err)
			return
		}
		r.onChunk = func(p []byte) {
			plains = append(plains, bytes.Clone(p))
			counts = append(counts, 0)
		}
		var recs []*Record
		for {
			rec, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				checkSentinel(t, err)
				return
			}
			recs = append(recs, rec)
			counts[len(counts)-1]++
		}
		if a := allocated() - before; a > maxFuzzAlloc+uint64(64*len(data)) {
			t.Errorf("reading %d bytes allocated %d", len(data), a)
		}

		// The header and each chunk's records are canonical.
		h := r.Header()
		raw, err := encodeHeader(h)
		if err != nil {
			t.Fatalf("an accepted header does not encode: %v", err)
		}
		hl := len(raw)
		if !bytes.Equal(data[preambleLen:preambleLen+hl], raw) {
			t.Fatal("the header read does not encode to the bytes read")
		}
		var chunks [][]byte
		i := 0
		for c, p := range plains {
			var enc []byte
			for range counts[c] {
				if enc, err = appendRecord(enc, recs[i], new([]Counter)); err != nil {
					t.Fatalf("an accepted record does not encode: %v", err)
				}
				i++
			}
			if !bytes.Equal(enc, p) {
				t.Fatalf("chunk %d: the records read do not encode to the bytes read", c)
			}
			chunks = append(chunks, enc)
		}

		// A verified file is written back byte for byte by the writer.
		if r.Verified() != nil {
			return
		}
		var out bytes.Buffer
		w, err := NewWriter(&out, h, key, &WriterOptions{Concurrency: 1, ChunkSize: MaxChunkSize})
		if err != nil {
			t.Fatal(err)
		}
		i = 0
		for c := range chunks {
			for range counts[c] {
				if err := w.Write(recs[i]); err != nil {
					t.Fatal(err)
				}
				i++
			}
			if err := w.flush(); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Fatal("a verified bundle does not write back to the same bytes")
		}
	}
}

// FuzzManifest is FuzzReader for manifests.
func FuzzManifest(f *testing.F) {
	addGolden(f, ".manifest")
	key := goldenKey(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		before := allocated()
		m, verified, _, err := readManifest(bytes.NewReader(data), &ReaderOptions{Unverified: true, VerifyManifest: keyOpts(t).VerifyManifest})
		if a := allocated() - before; a > 2*MaxHeaderSize+uint64(64*len(data)) {
			t.Errorf("reading %d bytes allocated %d", len(data), a)
		}
		if err != nil {
			checkSentinel(t, err)
			return
		}
		raw, err := encodeManifest(m)
		if err != nil {
			t.Fatalf("an accepted manifest does not encode: %v", err)
		}
		if !bytes.Equal(data[preambleLen:preambleLen+len(raw)], raw) {
			t.Fatal("the manifest read does not encode to the bytes read")
		}
		if verified != nil {
			return
		}
		var out bytes.Buffer
		if err := WriteManifest(&out, m, key); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Fatal("a verified manifest does not write back to the same bytes")
		}
	})
}

// FuzzRecords decodes arbitrary bytes as the content of a chunk: what
// decodes entirely must encode back to the same bytes.
func FuzzRecords(f *testing.F) {
	for _, r := range sampleRecords() {
		b, _ := appendRecord(nil, r, new([]Counter))
		f.Add(b)
	}
	f.Add(rawRecord(nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := recordDecoder{buf: data}
		var enc []byte
		for d.off < len(d.buf) {
			var rec Record
			if err := d.next(&rec); err != nil {
				checkSentinel(t, err)
				return
			}
			var err error
			if enc, err = appendRecord(enc, &rec, new([]Counter)); err != nil {
				t.Fatalf("a decoded record does not encode: %v", err)
			}
		}
		if !bytes.Equal(enc, data) {
			t.Fatalf("records decode from %x and encode to %x", data, enc)
		}
	})
}

// checkSentinel fails unless err wraps one of the reader's sentinels.
func checkSentinel(t *testing.T, err error) {
	t.Helper()
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("error without a kind: %v", err)
}
