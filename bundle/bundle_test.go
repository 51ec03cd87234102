package bundle

import (
	"bytes"
	"crypto/rsa"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/morango-sync/morango/fsic"
)

func TestRoundTrip(t *testing.T) {
	key := goldenKey(t)
	for _, tc := range []struct {
		name string
		recs []*Record
		opts *WriterOptions
	}{
		{"empty", nil, nil},
		{"sample", sampleRecords(), nil},
		{"sample serial", sampleRecords(), &WriterOptions{Concurrency: 1}},
		{"many small chunks", realisticRecords(2000), &WriterOptions{ChunkSize: 1000, Concurrency: 3}},
		{"one record per chunk", realisticRecords(50), &WriterOptions{ChunkSize: 1}},
		{"records larger than the window", []*Record{
			{ModelName: "m", Serialized: strings.Repeat("0123456789abcdef", 200000)},
			{ModelName: "m", Serialized: strings.Repeat("x", 5000)},
		}, &WriterOptions{ChunkSize: 4096}},
		{"fastest", realisticRecords(500), &WriterOptions{Level: zstd.SpeedFastest}},
		{"best", realisticRecords(500), &WriterOptions{Level: zstd.SpeedBestCompression}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := headerFor(tc.recs)
			b := writeBundle(t, h, tc.recs, key, tc.opts)
			got, recs, err := readAll(b, keyOpts(t))
			if err != nil {
				t.Fatal(err)
			}
			want := normalHeader(h)
			if !reflect.DeepEqual(got, &want) {
				t.Errorf("header:\n got %+v\nwant %+v", got, &want)
			}
			if len(recs) != len(tc.recs) {
				t.Fatalf("%d records, want %d", len(recs), len(tc.recs))
			}
			for i := range recs {
				want := *tc.recs[i]
				want.RMC = slices.SortedFunc(slices.Values(want.RMC), compareCounters)
				if !reflect.DeepEqual(recs[i], &want) {
					t.Errorf("record %d:\n got %+v\nwant %+v", i, recs[i], &want)
				}
			}
		})
	}
}

func TestChunkingDoesNotChangeContent(t *testing.T) {
	// Options change the compressed bytes, never what is read; and the
	// writer is deterministic for given options whatever its concurrency.
	key := goldenKey(t)
	recs := realisticRecords(3000)
	a := writeBundle(t, nil, recs, key, &WriterOptions{ChunkSize: 4096, Concurrency: 1})
	b := writeBundle(t, nil, recs, key, &WriterOptions{ChunkSize: 4096, Concurrency: 8})
	if !bytes.Equal(a, b) {
		t.Error("parallel compression changed the bytes written")
	}
	c := writeBundle(t, nil, recs, key, &WriterOptions{ChunkSize: 100000})
	_, ra, err := readAll(a, keyOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	_, rc, err := readAll(c, keyOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ra, rc) {
		t.Error("chunk size changed the records read")
	}
}

func TestRecordsSortedAndChecked(t *testing.T) {
	key := goldenKey(t)
	rec := &Record{ModelName: "m", RMC: []Counter{{"b", 2}, {"a", 1}, {"c", 3}}}
	b := writeBundle(t, nil, []*Record{rec}, key, nil)
	if want := []Counter{{"b", 2}, {"a", 1}, {"c", 3}}; !reflect.DeepEqual(rec.RMC, want) {
		t.Errorf("the writer changed the caller's record: %v", rec.RMC)
	}
	_, recs, err := readAll(b, keyOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := []Counter{{"a", 1}, {"b", 2}, {"c", 3}}; !reflect.DeepEqual(recs[0].RMC, want) {
		t.Errorf("RMC read %v, want %v", recs[0].RMC, want)
	}

	for _, tc := range []struct {
		name string
		rec  Record
		want error
	}{
		{"duplicate instance", Record{ModelName: "m", RMC: []Counter{{"a", 1}, {"a", 2}}}, ErrMalformed},
		{"negative counter", Record{ModelName: "m", LastSavedCounter: -1}, ErrMalformed},
		{"negative rmc", Record{ModelName: "m", RMC: []Counter{{"a", -1}}}, ErrMalformed},
		{"invalid utf-8", Record{ModelName: "m", Serialized: "\xff"}, ErrMalformed},
		{"too large", Record{ModelName: "m", Serialized: strings.Repeat("x", MaxChunkSize)}, ErrTooLarge},
		{"model not announced", Record{ModelName: "other"}, ErrCountMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := NewWriter(io.Discard, headerFor([]*Record{{ModelName: "m"}}), key, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Write(&tc.rec); !errors.Is(err, tc.want) {
				t.Fatalf("Write: %v, want %v", err, tc.want)
			}
			if err := w.Close(); !errors.Is(err, tc.want) {
				t.Errorf("Close after a failed Write: %v", err)
			}
		})
	}
}

func TestWriterCounts(t *testing.T) {
	key := goldenKey(t)
	recs := sampleRecords()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, headerFor(recs), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs[:len(recs)-1] {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); !errors.Is(err, ErrCountMismatch) {
		t.Fatalf("Close with a record missing: %v", err)
	}
	// Nothing was signed.
	if _, _, err := readAll(buf.Bytes(), keyOpts(t)); !errors.Is(err, ErrTruncated) {
		t.Errorf("reading an unfinished bundle: %v", err)
	}

	w, err = NewWriter(io.Discard, headerFor(recs[:1]), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(recs[0])
	if err := w.Write(recs[0]); !errors.Is(err, ErrCountMismatch) {
		t.Errorf("Write past the announced count: %v", err)
	}
}

func TestWriterRejectsHeaders(t *testing.T) {
	key := goldenKey(t)
	for _, tc := range []struct {
		name   string
		change func(h *Header)
		want   error
	}{
		{"empty profile", func(h *Header) { h.Profile = "" }, ErrMalformed},
		{"short transfer id", func(h *Header) { h.TransferID = "abc" }, ErrMalformed},
		{"upper-case id", func(h *Header) { h.SenderInstance = strings.ToUpper(h.SenderInstance) }, ErrMalformed},
		{"local time", func(h *Header) { h.Created = "2025-01-02T03:04:05+01:00" }, ErrMalformed},
		{"fractional seconds", func(h *Header) { h.Created = "2025-01-02T03:04:05.5Z" }, ErrMalformed},
		{"no chain", func(h *Header) { h.Chain = nil }, ErrMalformed},
		{"chain of another signer", func(h *Header) { h.SenderCert = id("someone") }, ErrMalformed},
		{"chain too long", func(h *Header) {
			for len(h.Chain) <= MaxChainLength {
				h.Chain = append(h.Chain[:1:1], h.Chain...)
			}
		}, ErrTooLarge},
		{"recipient half set", func(h *Header) { h.RecipientInstance = id("instance-b") }, ErrMalformed},
		{"negative count", func(h *Header) { h.Counts["m"] = -1; h.Records = -1 }, ErrMalformed},
		{"counts do not add up", func(h *Header) { h.Records++ }, ErrMalformed},
		{"negative fsic", func(h *Header) { h.FSIC.Sub["x"] = fsic.Counters{"i": -1} }, ErrMalformed},
		{"invalid utf-8 filter", func(h *Header) { h.Filter = []string{"\xff"} }, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := headerFor([]*Record{{ModelName: "m"}})
			tc.change(h)
			if _, err := NewWriter(io.Discard, h, key, nil); !errors.Is(err, tc.want) {
				t.Errorf("NewWriter: %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := NewWriter(io.Discard, headerFor(nil), nil, nil); err == nil {
		t.Error("NewWriter without a signer succeeded")
	}
}

func TestHeaderNormalised(t *testing.T) {
	// Nil lists and maps are written as empty ones, zero counts dropped:
	// one encoding per meaning, and the caller's header is not changed.
	key := goldenKey(t)
	h := headerFor(nil)
	h.Filter, h.FSIC = nil, fsic.V2{Sub: fsic.Partitions{"p": nil}}
	h.Counts = map[string]int64{"unused": 0}
	b := writeBundle(t, h, nil, key, nil)
	if _, ok := h.Counts["unused"]; !ok {
		t.Error("the writer changed the caller's header")
	}
	got, _, err := readAll(b, keyOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	if got.Filter == nil || got.FSIC.Super == nil || got.FSIC.Sub["p"] == nil || len(got.Counts) != 0 {
		t.Errorf("header read back: %+v", got)
	}
	if !bytes.Contains(b, []byte(`"filter":[],"fsic":{"super":{},"sub":{"p":{}}},"peer_fsic":null,"counts":{},"records":0}`)) {
		t.Errorf("header written: %s", b[preambleLen:preambleLen+binary.BigEndian.Uint32(b[10:])])
	}
}

// resign replaces the header of a valid bundle or manifest and signs the
// result again with the golden key.
func resign(tb testing.TB, file []byte, header string) []byte {
	tb.Helper()
	hl := int(binary.BigEndian.Uint32(file[10:]))
	body := file[preambleLen+hl : len(file)-trailerLen(file)]
	out := append([]byte{}, file[:10]...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(header)))
	out = append(out, header...)
	out = append(out, body...)
	return sign(tb, out, goldenKey(tb))
}

func trailerLen(file []byte) int { return sha256Size + 2 + 256 }

const sha256Size = 32

func TestHeaderCanonical(t *testing.T) {
	valid := writeBundle(t, nil, nil, goldenKey(t), nil)
	hl := int(binary.BigEndian.Uint32(valid[10:]))
	header := string(valid[preambleLen : preambleLen+hl])
	if _, _, err := readAll(resign(t, valid, header), keyOpts(t)); err != nil {
		t.Fatalf("re-signed valid bundle: %v", err)
	}
	for _, tc := range []struct {
		name, old, new string
	}{
		{"space", `"kind":"bundle"`, `"kind": "bundle"`},
		{"trailing newline", `"records":0}`, "\"records\":0}\n"},
		{"unknown member", `"records":0}`, `"records":0,"extra":1}`},
		{"missing member", `,"records":0`, ``},
		{"duplicate member", `"records":0}`, `"records":0,"records":0}`},
		{"member out of order", `"profile":"facilitydata","transfer_id":"` + id("transfer") + `"`, `"transfer_id":"` + id("transfer") + `","profile":"facilitydata"`},
		{"wrong kind", `"kind":"bundle"`, `"kind":"manifest"`},
		{"upper-case member", `"profile"`, `"Profile"`},
		{"escaped letter", `"facilitydata"`, `"f\u0061cilitydata"`},
		{"null list", `"filter":[`, `"filter":null,"x":[`},
		{"null map", `"counts":{}`, `"counts":null`},
		{"zero count", `"counts":{}`, `"counts":{"m":0}`},
		{"number with exponent", `"records":0`, `"records":0e0`},
		{"number too large", `"records":0`, `"records":99999999999999999999`},
		{"not an object", `{`, `[`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(header, tc.old) {
				t.Fatalf("%q not in header", tc.old)
			}
			b := resign(t, valid, strings.Replace(header, tc.old, tc.new, 1))
			if _, _, err := readAll(b, keyOpts(t)); !errors.Is(err, ErrMalformed) {
				t.Errorf("got %v, want ErrMalformed", err)
			}
		})
	}
}

func TestReaderOptions(t *testing.T) {
	key := goldenKey(t)
	b := writeBundle(t, nil, sampleRecords(), key, nil)

	if _, err := NewReader(bytes.NewReader(b), nil); err == nil {
		t.Error("a read without a key succeeded")
	}
	boom := errors.New("untrusted root")
	_, err := NewReader(bytes.NewReader(b), &ReaderOptions{Verify: func(*Header) (*rsa.PublicKey, error) { return nil, boom }})
	if !errors.Is(err, boom) {
		t.Errorf("a Verify error gave %v", err)
	}
	_, err = NewReader(bytes.NewReader(b), &ReaderOptions{Verify: func(*Header) (*rsa.PublicKey, error) { return nil, nil }})
	if err == nil {
		t.Error("a Verify without key succeeded")
	}

	// Header only.
	r, err := NewReader(bytes.NewReader(b), &ReaderOptions{HeaderOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Header().Records != int64(len(sampleRecords())) {
		t.Errorf("header: %+v", r.Header())
	}
	if _, err := r.Next(); err == nil || err == io.EOF {
		t.Errorf("Next on a header-only reader: %v", err)
	}

	// Unverified reads report instead of failing.
	other := &testKey(t, "other-key.pem").PublicKey
	for _, tc := range []struct {
		name string
		opts ReaderOptions
		file []byte
		want error
	}{
		{"no key", ReaderOptions{Unverified: true}, b, ErrUnverified},
		{"verify fails", ReaderOptions{Unverified: true, Verify: func(*Header) (*rsa.PublicKey, error) { return nil, boom }}, b, boom},
		{"wrong key", ReaderOptions{Unverified: true, Verify: func(*Header) (*rsa.PublicKey, error) { return other, nil }}, b, ErrBadSignature},
		{"damaged", ReaderOptions{Unverified: true, Verify: keyOpts(t).Verify}, flip(b, len(b)-260), ErrHashMismatch},
		{"valid", ReaderOptions{Unverified: true, Verify: keyOpts(t).Verify}, b, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(tc.file), &tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Verified(); !errors.Is(err, ErrUnverified) {
				t.Errorf("Verified before the end: %v", err)
			}
			n := 0
			for {
				_, err := r.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				n++
			}
			if n != len(sampleRecords()) {
				t.Errorf("%d records", n)
			}
			if err := r.Verified(); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("Verified: %v, want %v", err, tc.want)
			}
		})
	}
}

func flip(b []byte, at int) []byte {
	c := bytes.Clone(b)
	c[at] ^= 0x01
	return c
}

func TestManifestRoundTrip(t *testing.T) {
	key := goldenKey(t)
	var buf bytes.Buffer
	if err := WriteManifest(&buf, testManifest(), key); err != nil {
		t.Fatal(err)
	}
	m, err := ReadManifest(bytes.NewReader(buf.Bytes()), keyOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	want := normalManifest(testManifest())
	if !reflect.DeepEqual(m, &want) {
		t.Errorf("got %+v\nwant %+v", m, &want)
	}
	if _, err := ReadManifest(bytes.NewReader(buf.Bytes()), nil); err == nil {
		t.Error("a manifest read without a key succeeded")
	}
	other := &testKey(t, "other-key.pem").PublicKey
	_, err = ReadManifest(bytes.NewReader(buf.Bytes()), &ReaderOptions{VerifyManifest: func(*Manifest) (*rsa.PublicKey, error) { return other, nil }})
	if !errors.Is(err, ErrBadSignature) {
		t.Errorf("wrong key: %v", err)
	}
	if _, err := NewReader(bytes.NewReader(buf.Bytes()), keyOpts(t)); !errors.Is(err, ErrBadMagic) || !strings.Contains(err.Error(), "manifest") {
		t.Errorf("a manifest read as a bundle: %v", err)
	}
	m2 := testManifest()
	m2.Name = strings.Repeat("x", MaxDeviceName+1)
	if err := WriteManifest(io.Discard, m2, key); !errors.Is(err, ErrTooLarge) {
		t.Errorf("long device name: %v", err)
	}
}

func TestInspect(t *testing.T) {
	key := goldenKey(t)
	recs := realisticRecords(1000)
	b := writeBundle(t, nil, recs, key, &WriterOptions{ChunkSize: 16 << 10})
	s, err := Inspect(bytes.NewReader(b), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Kind != "bundle" || s.Version != 1 || s.Records != 1000 || s.Chunks < 5 || s.Size != int64(len(b)) {
		t.Errorf("stats: %+v", s)
	}
	if s.Signature != SignatureUnchecked || !s.DigestValid || s.Ratio < 1.5 || s.Uncompressed <= s.Compressed {
		t.Errorf("stats: %+v", s)
	}
	if !reflect.DeepEqual(s.Models, s.Header.Counts) {
		t.Errorf("models %v, header %v", s.Models, s.Header.Counts)
	}
	var parts int64
	for _, n := range s.Partitions {
		parts += n
	}
	if parts != 1000 || len(s.Partitions) < 100 {
		t.Errorf("%d partitions, %d records in them", len(s.Partitions), parts)
	}

	s, err = Inspect(bytes.NewReader(b), keyOpts(t))
	if err != nil || s.Signature != SignatureValid {
		t.Errorf("with the key: %+v, %v", s, err)
	}
	s, err = Inspect(bytes.NewReader(flip(b, len(b)-1)), keyOpts(t))
	if err != nil || s.Signature != SignatureInvalid || !s.DigestValid {
		t.Errorf("damaged signature: %+v, %v", s, err)
	}
	s, err = Inspect(bytes.NewReader(flip(b, bytes.Index(b, []byte(id("transfer"))))), keyOpts(t))
	if err != nil || s.DigestValid || s.Signature != SignatureUnchecked {
		t.Errorf("damaged header: %+v, %v", s, err)
	}
	if _, err := Inspect(bytes.NewReader(b[:len(b)-1]), nil); !errors.Is(err, ErrTruncated) {
		t.Errorf("truncated: %v", err)
	}

	var buf bytes.Buffer
	if err := WriteManifest(&buf, testManifest(), key); err != nil {
		t.Fatal(err)
	}
	s, err = Inspect(bytes.NewReader(buf.Bytes()), keyOpts(t))
	if err != nil || s.Kind != "manifest" || s.Manifest == nil || s.Signature != SignatureValid || s.Size != int64(buf.Len()) {
		t.Errorf("manifest: %+v, %v", s, err)
	}
}
