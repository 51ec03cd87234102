package bundle

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// heapInuse returns the heap in use after a collection.
func heapInuse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestStreamingMemory writes and reads back 200 000 records and checks that
// the heap does not grow with their number: writer and reader hold a few
// chunks, never the bundle.
func TestStreamingMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and reads 200 000 records")
	}
	const (
		n     = 200_000
		every = n / 10
		// The heap may vary by this much between samples: a few chunks and
		// the zstd state, far less than the records written.
		slack = 24 << 20
	)
	path := filepath.Join(t.TempDir(), "big.bundle")
	h := &Header{Profile: "facilitydata", TransferID: id("transfer"), Created: created,
		SenderInstance: id("instance-a"), SenderCert: id("sender"), Chain: testChain(),
		Counts: map[string]int64{"contentsummarylog": n/3 + 1, "contentsessionlog": n/3 + 1, "attemptlog": n / 3}, Records: n}

	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(f)
	w, err := NewWriter(bw, h, goldenKey(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var samples []uint64
	var plain int64
	for i := range n {
		r := realisticRecord(rng, i)
		plain += int64(len(r.Serialized) + len(r.ModelUUID) + len(r.Partition))
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
		if i%every == every-1 {
			samples = append(samples, heapInuse())
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	checkFlat(t, "writer", samples, slack, plain)

	f, err = os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := NewReader(bufio.NewReaderSize(f, 1<<16), keyOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	samples = samples[:0]
	for i := 0; ; i++ {
		_, err := r.Next()
		if err == io.EOF {
			if i != n {
				t.Fatalf("read %d records", i)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if i%every == every-1 {
			samples = append(samples, heapInuse())
		}
	}
	checkFlat(t, "reader", samples, slack, plain)
}

func checkFlat(t *testing.T, what string, samples []uint64, slack uint64, plain int64) {
	t.Helper()
	lo, hi := samples[0], samples[0]
	for _, s := range samples {
		lo, hi = min(lo, s), max(hi, s)
	}
	t.Logf("%s: heap in use %.1f to %.1f MiB over %.0f MiB of record content", what,
		float64(lo)/(1<<20), float64(hi)/(1<<20), float64(plain)/(1<<20))
	if uint64(plain) < 2*slack {
		t.Fatalf("the test writes too little (%d bytes) to show anything", plain)
	}
	if hi-lo > slack {
		t.Errorf("%s: heap grew from %d to %d bytes while streaming", what, lo, hi)
	}
}

const benchRecords = 100_000

var benchSet = func() func() []*Record {
	var recs []*Record
	return func() []*Record {
		if recs == nil {
			recs = realisticRecords(benchRecords)
		}
		return recs
	}
}()

// BenchmarkWriter writes 100 000 realistic records per iteration at each
// zstd level, compressing on the caller's goroutine (serial) and on
// several; it reports records/s and the bytes of bundle per record.
func BenchmarkWriter(b *testing.B) {
	recs := benchSet()
	key := goldenKey(b)
	h := headerFor(recs)
	for _, level := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault, zstd.SpeedBetterCompression, zstd.SpeedBestCompression} {
		for _, conc := range []int{1, DefaultConcurrency} {
			b.Run(fmt.Sprintf("level=%s/workers=%d", level, conc), func(b *testing.B) {
				var size int64
				for b.Loop() {
					cw := &countWriter{}
					w, err := NewWriter(cw, h, key, &WriterOptions{Level: level, Concurrency: conc})
					if err != nil {
						b.Fatal(err)
					}
					for _, r := range recs {
						if err := w.Write(r); err != nil {
							b.Fatal(err)
						}
					}
					if err := w.Close(); err != nil {
						b.Fatal(err)
					}
					size = cw.n
				}
				b.ReportMetric(float64(benchRecords*b.N)/b.Elapsed().Seconds(), "records/s")
				b.ReportMetric(float64(size)/benchRecords, "bytes/record")
				b.ReportMetric(float64(encodedSize(recs))/float64(size), "ratio")
			})
		}
	}
}

// BenchmarkReader reads and verifies a bundle of 100 000 realistic records
// per iteration.
func BenchmarkReader(b *testing.B) {
	recs := benchSet()
	data := writeBundle(b, nil, recs, goldenKey(b), nil)
	opts := keyOpts(b)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		r, err := NewReader(bytes.NewReader(data), opts)
		if err != nil {
			b.Fatal(err)
		}
		for {
			_, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(benchRecords*b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(len(data))/benchRecords, "bytes/record")
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// encodedSize is the size of the records before compression.
func encodedSize(recs []*Record) int {
	var b []byte
	n := 0
	for _, r := range recs {
		b, _ = appendRecord(b[:0], r, new([]Counter))
		n += len(b)
	}
	return n
}
