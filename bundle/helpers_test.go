package bundle

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/morango-sync/morango/certs"
	"github.com/morango-sync/morango/fsic"
)

const goldenDir = "testdata/golden"

var keys sync.Map // file name → *rsa.PrivateKey

// testKey loads a fixed key from testdata/golden: key.pem signs the golden
// files, other-key.pem is the wrong signer.
func testKey(tb testing.TB, name string) *rsa.PrivateKey {
	tb.Helper()
	if k, ok := keys.Load(name); ok {
		return k.(*rsa.PrivateKey)
	}
	b, err := os.ReadFile(filepath.Join(goldenDir, name))
	if err != nil {
		tb.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		tb.Fatalf("%s: no PEM block", name)
	}
	k, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
	if err != nil {
		tb.Fatal(err)
	}
	keys.Store(name, k)
	return k
}

func goldenKey(tb testing.TB) *rsa.PrivateKey { return testKey(tb, "key.pem") }

// keyOpts verifies with the golden key.
func keyOpts(tb testing.TB) *ReaderOptions {
	pub := &goldenKey(tb).PublicKey
	return &ReaderOptions{
		Verify:         func(*Header) (*rsa.PublicKey, error) { return pub, nil },
		VerifyManifest: func(*Manifest) (*rsa.PublicKey, error) { return pub, nil },
	}
}

// id returns a fixed 32-hex id derived from a name.
func id(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:16])
}

const created = "2025-01-02T03:04:05Z"

func testChain() []certs.Link {
	return []certs.Link{
		{ID: id("root"), Serialized: `{"id": "` + id("root") + `", "parent_id": null, "profile": "facilitydata"}`, Signature: "c2lnbmF0dXJlIG9mIHRoZSByb290"},
		{ID: id("sender"), Serialized: `{"id": "` + id("sender") + `", "parent_id": "` + id("root") + `"}`, Signature: "c2lnbmF0dXJlIG9mIHRoZSBzZW5kZXI="},
	}
}

func testFSIC() fsic.V2 {
	return fsic.V2{
		Super: fsic.Partitions{"": fsic.Counters{id("instance-a"): 7}},
		Sub: fsic.Partitions{
			id("dataset") + ":user-rw:" + id("learner"): fsic.Counters{id("instance-a"): 12, id("instance-b"): 3},
			id("dataset") + ":allusers-ro":              fsic.Counters{},
		},
	}
}

// headerFor returns a header announcing recs.
func headerFor(recs []*Record) *Header {
	h := &Header{
		Profile:        "facilitydata",
		TransferID:     id("transfer"),
		Created:        created,
		SenderInstance: id("instance-a"),
		SenderCert:     id("sender"),
		Chain:          testChain(),
		Filter:         []string{id("dataset")},
		FSIC:           testFSIC(),
		Counts:         map[string]int64{},
	}
	for _, r := range recs {
		h.Counts[r.ModelName]++
		h.Records++
	}
	return h
}

func testManifest() *Manifest {
	return &Manifest{
		Profile:  "facilitydata",
		Created:  created,
		Instance: id("instance-b"),
		CertID:   id("sender"),
		Chain:    testChain(),
		Filter:   []string{id("dataset") + ":user-rw:" + id("learner"), id("dataset") + ":allusers-ro"},
		FSIC:     testFSIC(),
		Name:     "Salle 3 — tablette <ß> ✓",
	}
}

// sampleRecords has every kind of field: unicode, escapes, deletions,
// record-max counter lists of several lengths, extreme counters.
func sampleRecords() []*Record {
	ds, learner := id("dataset"), id("learner")
	return []*Record{
		{
			ModelUUID: id("facility"), Profile: "facilitydata", ModelName: "facility",
			Partition: ds, SourceID: "École Ñandú 中文 🏫", Serialized: `{"id": "` + id("facility") + `", "name": "École Ñandú 中文 🏫", "note": "line\nbreak \u2028 \"quoted\""}`,
			LastSavedInstance: id("instance-a"), LastSavedCounter: 1,
			RMC: []Counter{{Instance: id("instance-a"), Counter: 1}},
		},
		{
			ModelUUID: id("learner"), Profile: "facilitydata", ModelName: "facilityuser",
			Partition: ds + ":user-rw:" + learner, SourceID: "", Serialized: `{"username": "amaru", "full_name": "Amaru Quispe"}`,
			LastSavedInstance: id("instance-b"), LastSavedCounter: 9223372036854775807,
			ConflictingSerializedData: "{\"full_name\": \"A. Quispe\"}\n{\"full_name\": \"Amaru\"}",
			RMC: []Counter{
				{Instance: id("instance-a"), Counter: 4},
				{Instance: id("instance-b"), Counter: 9223372036854775807},
				{Instance: id("instance-c"), Counter: 0},
			},
		},
		{
			ModelUUID: id("deleted-log"), Profile: "facilitydata", ModelName: "contentsummarylog",
			Partition: ds + ":user-rw:" + learner, Serialized: `{"progress": 0.5}`, Deleted: true,
			LastSavedInstance: id("instance-a"), LastSavedCounter: 300,
			RMC: []Counter{{Instance: id("instance-a"), Counter: 300}},
		},
		{
			ModelUUID: id("erased-log"), Profile: "facilitydata", ModelName: "contentsummarylog",
			Partition: ds + ":user-rw:" + learner, Serialized: "{}", Deleted: true, HardDeleted: true,
			LastSavedInstance: id("instance-b"), LastSavedCounter: 128,
			RMC: []Counter{{Instance: id("instance-b"), Counter: 128}},
		},
		{
			ModelUUID: id("lesson-child"), Profile: "facilitydata", ModelName: "collection",
			Partition: ds + ":allusers-ro", Serialized: `{"kind": "learnergroup"}`,
			LastSavedInstance: id("instance-a"), LastSavedCounter: 16384, SelfRefFK: id("classroom"),
		},
		{
			// Empty everything: the smallest record.
			ModelUUID: "", Profile: "", ModelName: "", Partition: "", Serialized: "",
		},
	}
}

// realisticRecord returns the i-th record of a school's logs: JSON of
// 150 to 300 bytes with hex ids, by one of 300 learners on one of 500
// pieces of content, written by one of 8 devices.
func realisticRecord(rng *rand.Rand, i int) *Record {
	hexid := func() string {
		var b [16]byte
		for j := range b {
			b[j] = byte(rng.UintN(256))
		}
		return hex.EncodeToString(b[:])
	}
	pooled := func(kind string, n uint) string {
		return id(fmt.Sprintf("%s%d", kind, rng.UintN(n)))
	}
	ds := "6b3a5c1e9f0d4a2b8c7d6e5f4a3b2c1d"
	user, content, inst := pooled("u", 300), pooled("c", 500), pooled("i", 8)
	rid := hexid()
	var ser strings.Builder
	fmt.Fprintf(&ser, `{"id":"%s","user_id":"%s","content_id":"%s","channel_id":"%s","kind":"%s","progress":%.2f,"time_spent":%.1f`,
		rid, user, content, ds, [...]string{"exercise", "video", "document", "html5"}[rng.UintN(4)], rng.Float64(), rng.Float64()*3600)
	if rng.UintN(2) == 0 {
		fmt.Fprintf(&ser, `,"start_timestamp":"2025-03-%02dT%02d:%02d:00Z","completion_timestamp":null`, 1+rng.UintN(28), rng.UintN(24), rng.UintN(60))
	}
	ser.WriteString(`,"extra_fields":"{}"}`)
	c := int64(i + 1)
	r := &Record{
		ModelUUID: rid, Profile: "facilitydata", ModelName: [...]string{"contentsummarylog", "contentsessionlog", "attemptlog"}[i%3],
		Partition: ds + ":user-rw:" + user, Serialized: ser.String(),
		LastSavedInstance: inst, LastSavedCounter: c,
		RMC: []Counter{{Instance: inst, Counter: c}},
	}
	if i%5 == 0 {
		other := pooled("j", 8)
		r.RMC = append(r.RMC, Counter{Instance: other, Counter: int64(rng.UintN(1 << 20))})
	}
	return r
}

func realisticRecords(n int) []*Record {
	rng := rand.New(rand.NewPCG(1, 2))
	recs := make([]*Record, n)
	for i := range recs {
		recs[i] = realisticRecord(rng, i)
	}
	return recs
}

// writeBundle writes recs under headerFor(recs), or h if given.
func writeBundle(tb testing.TB, h *Header, recs []*Record, key *rsa.PrivateKey, opts *WriterOptions) []byte {
	tb.Helper()
	if h == nil {
		h = headerFor(recs)
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, h, key, opts)
	if err != nil {
		tb.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// readAll reads a bundle to its end.
func readAll(b []byte, opts *ReaderOptions) (*Header, []*Record, error) {
	r, err := NewReader(bytes.NewReader(b), opts)
	if err != nil {
		return nil, nil, err
	}
	var recs []*Record
	for {
		rec, err := r.Next()
		if err != nil {
			if err == io.EOF {
				return r.Header(), recs, nil
			}
			return r.Header(), recs, err
		}
		recs = append(recs, rec)
	}
}

// sign appends a trailer to the bytes of a file: its digest and its
// signature by key.
func sign(tb testing.TB, prefix []byte, key *rsa.PrivateKey) []byte {
	tb.Helper()
	digest := sha256.Sum256(prefix)
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, digest[:])
	if err != nil {
		tb.Fatal(err)
	}
	out := append(bytes.Clone(prefix), digest[:]...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(sig)))
	return append(out, sig...)
}
