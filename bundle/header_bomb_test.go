package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

// canon is the canonical encoding of v.
func canon(tb testing.TB, v any) json.RawMessage {
	tb.Helper()
	b, err := canonicalJSON(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// wireOf is h as written, each field in its canonical encoding.
func wireOf(tb testing.TB, h *Header) bundleWire {
	tb.Helper()
	n := normalHeader(h)
	enc := func(v any) json.RawMessage { return canon(tb, v) }
	return bundleWire{Kind: kindBundle, Profile: n.Profile, TransferID: n.TransferID, Created: n.Created,
		SenderInstance: n.SenderInstance, SenderCert: n.SenderCert, Chain: enc(n.Chain),
		RecipientInstance: n.RecipientInstance, RecipientCert: n.RecipientCert, Filter: enc(n.Filter),
		FSIC: enc(n.FSIC), PeerFSIC: enc(n.PeerFSIC), Counts: enc(n.Counts), Records: n.Records}
}

// jsonList is open, then n elements made by elem, comma-separated, then
// close, as long as it stays under size bytes.
func jsonList(open string, elem func(i int) string, close string, size int) (json.RawMessage, int) {
	var b strings.Builder
	b.WriteString(open)
	n := 0
	for ; ; n++ {
		e := elem(n)
		if b.Len()+len(e)+1+len(close) > size {
			break
		}
		if n > 0 {
			b.WriteByte(',')
		}
		b.WriteString(e)
	}
	b.WriteString(close)
	return json.RawMessage(b.String()), n
}

// unsigned is a bundle without records whose header is w, signed with a
// key its chain does not name: nobody vouches for it.
func unsigned(tb testing.TB, w bundleWire) []byte {
	tb.Helper()
	raw, err := canonicalJSON(w)
	if err != nil {
		tb.Fatal(err)
	}
	if len(raw) > MaxHeaderSize {
		tb.Fatalf("header of %d bytes", len(raw))
	}
	return sign(tb, cat(preamble(bundleMagic, 1, raw), endChunk), testKey(tb, "other-key.pem"))
}

// A header near the size limit, from a file nobody signed, must cost a
// few times its size to look at: its lists are bounded before they are
// decoded, its counters are decoded only once the signature is checked,
// and invalid UTF-8 is refused before anything is decoded.
func TestUnsignedHeadersCostTheirSize(t *testing.T) {
	skipShort(t)
	room := MaxHeaderSize - 4096
	// A field holding mark becomes one string of fill bytes that brings
	// the header near the size limit.
	const mark = "MARKMARKMARK"
	oneLink := func(w *bundleWire) int {
		c := testChain()
		c[0].Serialized = mark
		w.Chain = canon(t, c)
		return 1
	}
	oneModel := func(w *bundleWire) int {
		w.Counts, w.Records = canon(t, map[string]int64{mark: 1}), 1
		return 1
	}
	tests := []struct {
		name   string
		change func(w *bundleWire) int // returns the entries it wrote
		fill   byte
		want   error // from NewReader; nil: the whole file is read
		end    error // from the whole read; nil: ErrBadSignature
	}{
		{name: "counters of many partitions", change: func(w *bundleWire) int {
			var n int
			w.FSIC, n = jsonList(`{"super":{},"sub":{`, func(i int) string { return fmt.Sprintf(`"%07d":{"a":1}`, i) }, `}}`, room)
			return n
		}},
		{name: "counters of many instances", change: func(w *bundleWire) int {
			var n int
			w.PeerFSIC, n = jsonList(`{"super":{"p":{`, func(i int) string { return fmt.Sprintf(`"%07d":1`, i) }, `}},"sub":{}}`, room)
			return n
		}},
		{name: "a long chain", change: func(w *bundleWire) int {
			var n int
			w.Chain, n = jsonList(`[`, func(int) string { return `{}` }, `]`, room)
			return n
		}, want: ErrTooLarge},
		{name: "a long filter", change: func(w *bundleWire) int {
			var n int
			w.Filter, n = jsonList(`[`, func(int) string { return `""` }, `]`, room)
			return n
		}, want: ErrTooLarge},
		{name: "many models", change: func(w *bundleWire) int {
			var n int
			w.Counts, n = jsonList(`{`, func(i int) string { return fmt.Sprintf(`"%07d":1`, i) }, `}`, room)
			w.Records = int64(n)
			return n
		}, want: ErrTooLarge},
		{name: "a long profile", change: func(w *bundleWire) int { w.Profile = mark; return 1 }, fill: 'a'},
		{name: "a long chain link", change: oneLink, fill: 'a'},
		{name: "a long filter prefix", change: func(w *bundleWire) int { w.Filter = canon(t, []string{mark}); return 1 }, fill: 'a'},
		{name: "a long model name", change: oneModel, fill: 'a', end: ErrCountMismatch}, // its one record is missing
		{name: "a profile not UTF-8", change: func(w *bundleWire) int { w.Profile = mark; return 1 }, fill: 0xff, want: ErrMalformed},
		{name: "a chain link not UTF-8", change: oneLink, fill: 0xff, want: ErrMalformed},
		{name: "a model name not UTF-8", change: oneModel, fill: 0xff, want: ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := wireOf(t, headerFor(nil))
			n := tc.change(&w)
			file := unsigned(t, w)
			if tc.fill != 0 {
				raw := canon(t, w)
				raw = bytes.Replace(raw, []byte(mark), bytes.Repeat([]byte{tc.fill}, room-len(raw)), 1)
				file = sign(t, cat(preamble(bundleMagic, 1, raw), endChunk), testKey(t, "other-key.pem"))
			}
			// One read: the header, its fields' copies and their canonical
			// encodings, up to a dozen times its size when one string
			// fills it, in short-lived allocations. Decoding the counters
			// or the lists before bounding them, or a string of invalid
			// UTF-8, took 20 to 35 times.
			limit := uint64(12 * len(file))
			before := allocated()
			start := time.Now()
			_, err := NewReader(bytes.NewReader(file), keyOpts(t))
			a := allocated() - before
			t.Logf("%d entries, %d-byte file: header read with %d MiB allocated in %v: %v", n, len(file), a>>20, time.Since(start), err)
			if err != nil && len(err.Error()) > 1000 {
				t.Errorf("an error message of %d bytes", len(err.Error()))
			}
			if a > limit {
				t.Errorf("reading the header allocated %d MiB, more than %d MiB", a>>20, limit>>20)
			}
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Errorf("error %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			before = allocated()
			_, _, err = readAll(file, keyOpts(t))
			a = allocated() - before
			t.Logf("whole file read with %d MiB allocated: %v", a>>20, err)
			if err != nil && len(err.Error()) > 1000 {
				t.Errorf("an error message of %d bytes", len(err.Error()))
			}
			end := tc.end
			if end == nil {
				end = ErrBadSignature
			}
			if !errors.Is(err, end) {
				t.Errorf("error %v, want %v", err, end)
			}
			if a > limit {
				t.Errorf("reading the file allocated %d MiB, more than %d MiB", a>>20, limit>>20)
			}
		})
	}
}

func TestEntries(t *testing.T) {
	for _, tc := range []struct {
		raw   string
		limit int
		want  int
	}{
		{`[]`, 5, 0}, {`{}`, 5, 0}, {`null`, 5, 0}, {`"a,b"`, 5, 0},
		{`[1]`, 5, 1}, {`[1,2,3]`, 5, 3}, {`[1,2,3]`, 2, 3},
		{`["a,b","c\\",",\"],["]`, 5, 3}, // commas and brackets inside strings, an escaped quote
		{`[{"a":[1,2],"b":{"c":3}},[4,5]]`, 5, 2},
		{`{"a":1,"b":[2,3],"c":{"d":4}}`, 5, 3},
		{`[1,2,3,4,5,6,7]`, 3, 4}, // stops one past the limit
	} {
		if got := entries([]byte(tc.raw), tc.limit); got != tc.want {
			t.Errorf("entries(%s, %d) = %d, want %d", tc.raw, tc.limit, got, tc.want)
		}
	}
}

// The counters come with the verified file, not before; a header-only read
// never decodes them.
func TestCountersDecodedOnceVerified(t *testing.T) {
	recs := sampleRecords()
	h := headerFor(recs)
	peer := testFSIC()
	peer.Sub["other"] = nil
	h.PeerFSIC = &peer
	file := writeBundle(t, h, recs, goldenKey(t), nil)
	want := normalHeader(h)

	r, err := NewReader(bytes.NewReader(file), keyOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Header(); len(got.FSIC.Sub) != 0 || got.PeerFSIC != nil {
		t.Fatalf("counters before the file is verified: %+v, %+v", got.FSIC, got.PeerFSIC)
	}
	for {
		if _, err := r.Next(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if got := r.Header(); !reflect.DeepEqual(got.FSIC, want.FSIC) || !reflect.DeepEqual(got.PeerFSIC, want.PeerFSIC) {
		t.Errorf("counters %+v, %+v; want %+v, %+v", got.FSIC, got.PeerFSIC, want.FSIC, want.PeerFSIC)
	}

	ho, err := NewReader(bytes.NewReader(file), &ReaderOptions{HeaderOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := ho.Header(); len(got.FSIC.Sub) != 0 || got.TransferID != h.TransferID || got.Records != h.Records {
		t.Errorf("header-only read: %+v", got)
	}

	// The counters are checked all the same: a verified file whose
	// counters are not canonical fails at its end.
	w := wireOf(t, h)
	w.FSIC = json.RawMessage(`{"sub":{},"super":{}}`)
	raw := canon(t, w)
	var body bytes.Buffer
	body.Write(preamble(bundleMagic, 1, raw))
	full := writeBundle(t, h, recs, goldenKey(t), nil)
	body.Write(full[preambleLen+int(len(headerJSON(t, h))) : len(full)-sigLen(full)])
	bad := sign(t, body.Bytes(), goldenKey(t))
	if _, _, err := readAll(bad, keyOpts(t)); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "canonical") {
		t.Errorf("counters out of order: %v, want ErrMalformed", err)
	}
}

// A manifest nobody signed costs its size too, and a signed one gives its
// counters.
func TestManifestCountersOnceVerified(t *testing.T) {
	m := testManifest()
	var good bytes.Buffer
	if err := WriteManifest(&good, m, goldenKey(t)); err != nil {
		t.Fatal(err)
	}
	got, err := ReadManifest(bytes.NewReader(good.Bytes()), keyOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := normalManifest(m); !reflect.DeepEqual(got.FSIC, want.FSIC) {
		t.Errorf("counters %+v, want %+v", got.FSIC, want.FSIC)
	}

	skipShort(t)
	n := normalManifest(m)
	enc := func(v any) json.RawMessage { return canon(t, v) }
	w := manifestWire{Kind: kindManifest, Profile: n.Profile, Created: n.Created, Instance: n.Instance, CertID: n.CertID,
		Chain: enc(n.Chain), Filter: enc(n.Filter), Name: n.Name}
	w.FSIC, _ = jsonList(`{"super":{},"sub":{`, func(i int) string { return fmt.Sprintf(`"%07d":{"a":1}`, i) }, `}}`, MaxHeaderSize-4096)
	raw := enc(w)
	file := sign(t, preamble(manifestMagic, 1, raw), testKey(t, "other-key.pem"))
	before := allocated()
	_, err = ReadManifest(bytes.NewReader(file), keyOpts(t))
	a := allocated() - before
	t.Logf("%d-byte manifest: %d MiB allocated: %v", len(file), a>>20, err)
	if !errors.Is(err, ErrBadSignature) {
		t.Errorf("error %v, want ErrBadSignature", err)
	}
	if limit := uint64(8 * len(file)); a > limit {
		t.Errorf("allocated %d MiB, more than %d MiB", a>>20, limit>>20)
	}
}

// sigLen is the length of a file's trailer: digest, length, signature.
func sigLen(file []byte) int {
	// The trailer ends the file: 32-byte digest, 2-byte length, signature.
	for n := 1; n <= MaxSignatureSize; n++ {
		i := len(file) - n - 2
		if i >= 32 && int(file[i])<<8|int(file[i+1]) == n {
			return n + 2 + 32
		}
	}
	return 0
}

// skipShort skips the tests that read 16 MiB headers and bound what they
// allocate: -short runs (the race detector's, whose instrumentation
// allocates more) leave them to the full run.
func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 16 MiB headers; the full run checks their allocations")
	}
}
