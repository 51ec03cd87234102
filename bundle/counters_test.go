package bundle

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// counterBomb is a bundle of one chunk holding one record whose
// record-max-counter list is pairs, announced as n entries. The file is
// signed with a key its chain does not name: a reader must refuse the
// list before it gets to the signature, at the end of the file.
func counterBomb(t *testing.T, n int, pairs []byte) []byte {
	t.Helper()
	rec := &Record{ModelUUID: id("r"), Profile: "facilitydata", ModelName: "m", Partition: id("dataset")}
	full := writeBundle(t, headerFor([]*Record{rec}), []*Record{rec}, goldenKey(t), nil)
	head := full[:preambleLen+int(binary.BigEndian.Uint32(full[10:14]))]
	var scratch []Counter
	plain, err := appendRecord(nil, rec, &scratch)
	if err != nil {
		t.Fatal(err)
	}
	plain = plain[:len(plain)-1] // its empty list
	plain = binary.AppendUvarint(plain, uint64(n))
	plain = append(plain, pairs...)
	if len(plain) > MaxChunkSize {
		t.Fatalf("chunk of %d bytes", len(plain))
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	if err != nil {
		t.Fatal(err)
	}
	frame := enc.EncodeAll(plain, nil)
	var body bytes.Buffer
	body.Write(head)
	var ch [12]byte // compressed size, uncompressed size, records
	putChunkHeader(ch[:], uint32(len(frame)), uint32(len(plain)), 1)
	body.Write(ch[:])
	body.Write(frame)
	body.Write(make([]byte, 12)) // the end of the chunks
	return sign(t, body.Bytes(), testKey(t, "other-key.pem"))
}

// A few kilobytes of file must not make the reader allocate for millions
// of counters: the list's length is bounded, and its order is checked as
// each pair is read.
func TestCounterListsAllocateLittle(t *testing.T) {
	sorted := func(n int) []byte {
		var b []byte
		for i := range n {
			b = appendString(b, fmt.Sprintf("%08x", i))
			b = binary.AppendUvarint(b, 1)
		}
		return b
	}
	most := (MaxChunkSize - 1024) / 2
	tests := []struct {
		name  string
		n     int
		pairs []byte
		want  string
	}{
		// Millions of ("", 0) pairs: two bytes each, a few KiB compressed.
		{"millions of empty pairs", most, make([]byte, 2*most), "more than 65536"},
		{"one past the limit", MaxRecordCounters + 1, sorted(MaxRecordCounters + 1), "more than 65536"},
		{"the limit, the last pair out of order", MaxRecordCounters,
			append(sorted(MaxRecordCounters-1), 1, '0', 1), "not sorted"}, // "0" < "00000000"
		{"the second pair out of order", MaxRecordCounters, append(sorted(1), make([]byte, 2*MaxRecordCounters)...), "not sorted"},
	}
	opts := keyOpts(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := counterBomb(t, tc.n, tc.pairs)
			before := allocated()
			_, _, err := readAll(file, opts)
			a := allocated() - before
			t.Logf("%d-byte file: %d bytes allocated: %v", len(file), a, err)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want ErrMalformed saying %q", err, tc.want)
			}
			// Two chunk buffers (compressed and not) and one record's
			// counters at the most.
			if limit := uint64(2*MaxChunkSize + 48*MaxRecordCounters + 4<<20); a > limit {
				t.Errorf("refusing it allocated %d MiB, more than %d MiB", a>>20, limit>>20)
			}
		})
	}
}

func TestWriterRefusesTooManyCounters(t *testing.T) {
	rec := &Record{ModelUUID: id("r"), Profile: "facilitydata", ModelName: "m", Partition: id("dataset")}
	for i := range MaxRecordCounters + 1 {
		rec.RMC = append(rec.RMC, Counter{Instance: fmt.Sprintf("%08x", i), Counter: 1})
	}
	var scratch []Counter
	if _, err := appendRecord(nil, rec, &scratch); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a record with %d counters: %v, want ErrMalformed", len(rec.RMC), err)
	}
	rec.RMC = rec.RMC[:MaxRecordCounters]
	if _, err := appendRecord(nil, rec, &scratch); err != nil {
		t.Fatalf("a record with %d counters: %v", len(rec.RMC), err)
	}
}
