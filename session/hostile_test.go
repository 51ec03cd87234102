package session

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/morango-sync/morango/bundle"
	"github.com/morango-sync/morango/certs"
	"github.com/morango-sync/morango/ids"
	"github.com/morango-sync/morango/store"
)

// The hostile-input tests: what a person holding a USB stick, or a device
// holding a valid certificate, can put in front of an import. They add to
// TestRejectedBundles (damaged and forged files, an untrusted root, a
// filter outside the signer's scope, another profile) and TestSingleUserScope
// (records outside the signer's scope): trust and scope variants that test
// does not make, records of another profile, sizes and counts that lie,
// decompression bombs, replays, and records whose fields contradict their
// partition.

// ---- what a database holds

// tableDigests returns the SHA-256 of the content of every table of the
// database, the app's and morango_*: its rows, each as the SQL literals of
// its columns, sorted.
func tableDigests(t *testing.T, d *device) map[string]string {
	t.Helper()
	out := map[string]string{}
	for tb, rows := range dump(t, d.app, allTables(t, d.app)) {
		h := sha256.New()
		for _, r := range rows {
			h.Write([]byte(r))
			h.Write([]byte{0})
		}
		out[tb] = hex.EncodeToString(h.Sum(nil))
	}
	return out
}

// changedTables lists the tables whose content differs between two digests.
func changedTables(a, b map[string]string) []string {
	var l []string
	for tb, d := range a {
		if b[tb] != d {
			l = append(l, tb)
		}
	}
	for tb := range b {
		if _, ok := a[tb]; !ok {
			l = append(l, tb)
		}
	}
	slices.Sort(l)
	return l
}

// The tables an import writes to say that it ran, whatever it applied: the
// transfer session and its sync session, and the bundle once applied.
var (
	sessionTables = []string{"morango_syncsession", "morango_transfersession"}
	appliedTables = []string{"morango_appliedbundle", "morango_syncsession", "morango_transfersession"}
)

// ---- bundles built byte by byte (docs/bundle-format.md)

// bundleParts are a bundle's signed bytes without the end chunk: the
// preamble and header, then the data chunks.
type bundleParts struct {
	head, chunks []byte
}

func partsOf(t *testing.T, b []byte) bundleParts {
	t.Helper()
	l := layout(t, b)
	return bundleParts{head: b[:l.headerEnd], chunks: b[l.headerEnd : l.trailer-12]}
}

// signBundle ends a body and signs it as a writer does: the end chunk, the
// SHA-256 of everything before the trailer and the PKCS#1 v1.5 signature of
// that digest. Whatever the bytes say, the signature is valid: these
// bundles come from a signer the importer trusts.
func signBundle(t *testing.T, key *rsa.PrivateKey, parts ...[]byte) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, p := range parts {
		b.Write(p)
	}
	b.Write(make([]byte, 12))
	sum := sha256.Sum256(b.Bytes())
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	b.Write(sum[:])
	b.Write(binary.BigEndian.AppendUint16(nil, uint16(len(sig))))
	b.Write(sig)
	return b.Bytes()
}

// chunkOf is a chunk header with the given compressed length c,
// uncompressed length u and record count n, then the frame.
func chunkOf(frame []byte, c, u, n uint32) []byte {
	b := binary.BigEndian.AppendUint32(nil, c)
	b = binary.BigEndian.AppendUint32(b, u)
	b = binary.BigEndian.AppendUint32(b, n)
	return append(b, frame...)
}

// chunkFor compresses plain into a chunk that tells the truth about it.
func chunkFor(t *testing.T, plain []byte, n uint32) []byte {
	t.Helper()
	f := zstdFrame(t, plain)
	return chunkOf(f, uint32(len(f)), uint32(len(plain)), n)
}

func zstdFrame(t *testing.T, plain []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithSingleSegment(true))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(plain, nil)
}

// chunkFields reads the three lengths of the first chunk of parts.
func chunkFields(p bundleParts) (c, u, n uint32) {
	b := p.chunks
	return binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:]), binary.BigEndian.Uint32(b[8:])
}

// withChunkFields returns parts' chunks with the first chunk's header
// fields changed by fn.
func withChunkFields(p bundleParts, fn func(c, u, n *uint32)) []byte {
	c, u, n := chunkFields(p)
	fn(&c, &u, &n)
	b := slices.Clone(p.chunks)
	binary.BigEndian.PutUint32(b, c)
	binary.BigEndian.PutUint32(b[4:], u)
	binary.BigEndian.PutUint32(b[8:], n)
	return b
}

// appendString, appendBool and appendRecord encode a record as the format
// says (docs/bundle-format.md, "Records").
func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func appendRecord(b []byte, r *bundle.Record) []byte {
	for _, s := range []string{r.ModelUUID, r.Profile, r.ModelName, r.Partition, r.SourceID, r.Serialized} {
		b = appendString(b, s)
	}
	b = appendBool(b, r.Deleted)
	b = appendBool(b, r.HardDeleted)
	b = appendString(b, r.LastSavedInstance)
	b = binary.AppendUvarint(b, uint64(r.LastSavedCounter))
	b = appendString(b, r.ConflictingSerializedData)
	b = appendString(b, r.SelfRefFK)
	b = binary.AppendUvarint(b, uint64(len(r.RMC)))
	for _, c := range r.RMC {
		b = appendString(b, c.Instance)
		b = binary.AppendUvarint(b, uint64(c.Counter))
	}
	return b
}

// rleFrame is a zstd frame (RFC 8878) that declares fcs bytes of content and
// holds blocks RLE blocks of 128 KiB each: 4 bytes per block on disk.
func rleFrame(fcs uint64, blocks int) []byte {
	f := []byte{0x28, 0xb5, 0x2f, 0xfd}
	// Frame header descriptor: an 8-byte content size, not single-segment,
	// no checksum, no dictionary; then a window of 128 KiB (exponent 7).
	f = append(f, 3<<6, 7<<3)
	f = binary.LittleEndian.AppendUint64(f, fcs)
	const size = 128 << 10
	for i := range blocks {
		hdr := uint32(size<<3 | 1<<1) // RLE
		if i == blocks-1 {
			hdr |= 1 // last block
		}
		f = append(f, byte(hdr), byte(hdr>>8), byte(hdr>>16), 'x')
	}
	return f
}

// lyingFrame compresses n bytes of a repeated pattern into compressed
// blocks (not raw or RLE ones, whose sizes a reader sees without
// decompressing) and rewrites the frame's header to declare fcs bytes: only
// decompressing finds the lie out.
func lyingFrame(t *testing.T, n int, fcs uint32) []byte {
	t.Helper()
	var out bytes.Buffer
	enc, err := zstd.NewWriter(&out, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithSingleSegment(false),
		zstd.WithWindowSize(1<<20), zstd.WithEncoderCRC(false))
	if err != nil {
		t.Fatal(err)
	}
	enc.ResetContentSize(&out, int64(n))
	pattern := bytes.Repeat([]byte("morango sneakernet "), 1<<12)
	for left := n; left > 0; {
		k := min(left, len(pattern))
		if _, err := enc.Write(pattern[:k]); err != nil {
			t.Fatal(err)
		}
		left -= k
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	f := out.Bytes()
	// A 4-byte content size after the descriptor and the window byte.
	if f[4]>>6 != 2 || f[4]&(1<<5) != 0 {
		t.Fatalf("unexpected frame descriptor %#x", f[4])
	}
	binary.LittleEndian.PutUint32(f[6:], fcs)
	return f
}

// ---- the devices

// hostile is a facility with a root certificate and data, City (a
// full-facility device holding the facility's data, the one that imports
// the hostile bundles), the learner's tablet (single-user) and a stranger
// (another facility, its own root).
type hostile struct {
	t                     *testing.T
	dir                   string
	fac, city, home, evil *device
	f                     facilityData
}

func newHostile(t *testing.T) *hostile {
	t.Helper()
	h := &hostile{t: t, dir: t.TempDir()}
	h.fac = newDevice(t, "facility")
	h.fac.root()
	h.f = seedFacility(h.fac)
	h.city = newDevice(t, "city")
	grant(t, h.fac, h.city, "full-facility", map[string]string{"dataset_id": h.f.dataset})
	h.home = newDevice(t, "home")
	grant(t, h.fac, h.home, "single-user", map[string]string{"dataset_id": h.f.dataset, "user_id": h.f.learner})
	h.evil = newDevice(t, "stranger")
	h.evil.root()
	seedFacility(h.evil)
	first := h.path("first.bundle")
	h.fac.export(first, "")
	if r := h.city.mustImport(first); r.Store.New != 8 {
		t.Fatalf("city's first import: %+v", r.Store)
	}
	return h
}

func (h *hostile) path(name string) string { return filepath.Join(h.dir, name) }

func (h *hostile) chain(d *device) []certs.Link {
	h.t.Helper()
	c, err := d.db.Chain(h.t.Context(), d.cert)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// note is an admin note record written by inst, under the facility's
// dataset partition.
func (h *hostile) note(inst string, counter int64) bundle.Record {
	id := ids.Random()
	return bundle.Record{ModelUUID: id, Profile: "facilitydata", ModelName: "adminnote", Partition: h.f.dataset,
		Serialized:        fmt.Sprintf(`{"id":%q,"dataset_id":%q,"body":"forged"}`, id, h.f.dataset),
		LastSavedInstance: inst, LastSavedCounter: counter, RMC: []bundle.Counter{{Instance: inst, Counter: counter}}}
}

// facilityBundle writes, with the facility's key and chain, a bundle of
// recs under the whole facility and returns its bytes.
func (h *hostile) facilityBundle(name, transfer string, recs []bundle.Record) []byte {
	h.t.Helper()
	p := h.path(name)
	writeBundle(h.t, p, bundle.Header{Profile: "facilitydata", TransferID: transfer, Created: "2025-11-22T12:00:00Z",
		SenderInstance: h.fac.instance(), SenderCert: h.fac.cert, Chain: h.chain(h.fac), Filter: []string{h.f.dataset}},
		h.fac.ownCert(h.fac.cert).PrivateKey, recs)
	b, err := os.ReadFile(p)
	if err != nil {
		h.t.Fatal(err)
	}
	return b
}

// selfGranted returns a certificate of scope with params under parent,
// signed with parent's key though the scope is wider than parent's: what a
// device can make with its own key and no one else's.
func selfGranted(t *testing.T, parent *certs.Certificate, scope string, params map[string]string, primary string) (*certs.Certificate, *rsa.PrivateKey) {
	t.Helper()
	key, err := certs.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	c := &certs.Certificate{ParentID: parent.ID, Profile: "facilitydata", ScopeDefinitionID: scope,
		ScopeVersion: 1, Salt: ids.Random(), PublicKey: &key.PublicKey}
	if c.ScopeParams, err = certs.ParamsJSON(params, primary); err != nil {
		t.Fatal(err)
	}
	c.ID = c.ComputeID()
	c.Serialized = c.Serialize()
	if c.Signature, err = certs.Sign(parent.PrivateKey, []byte(c.Serialized)); err != nil {
		t.Fatal(err)
	}
	return c, key
}

// allocated returns the bytes allocated by the process so far.
func allocated() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

// importLimits bound what refusing any hostile bundle may cost: the
// bombs below would expand to 1 GiB.
const (
	maxImportAlloc = 48 << 20
	maxImportTime  = 10 * time.Second
)

// TestHostileBundles imports into City one bundle per way a hostile stick
// or a hostile signer can try to get past the import. Each is refused with
// its own error kind, which is none of the others' (the table lists the
// kinds) and comes with a hint; none writes anything but the record of the
// failed attempt; each is refused quickly and in bounded memory.
//
// Failures found while reading the header (trust, chain, scope, profile,
// replay) write nothing at all. Failures found in the body (counts, sizes,
// bombs) are found by the first, verifying read, after the transfer session
// is created: they leave one errored, inactive transfer session and its
// sync session, and nothing else.
func TestHostileBundles(t *testing.T) {
	h := newHostile(t)
	ctx := t.Context()
	f := h.f
	facKey := h.fac.ownCert(h.fac.cert).PrivateKey
	facInst := h.fac.instance()
	homeCert := h.home.ownCert(h.home.cert)
	homeInst := h.home.instance()
	homeWrite := []string{f.dataset + ":user-rw:" + f.learner}

	// Records the facility signs, for the bundles whose bytes lie.
	logs := []bundle.Record{
		logRecord(ids.Random(), f.dataset, f.learner, "c7", 0.5, facInst, 900),
		logRecord(ids.Random(), f.dataset, f.other, "c7", 0.6, facInst, 901),
		logRecord(ids.Random(), f.dataset, f.learner, "c8", 0.7, facInst, 902),
	}
	transfer := ids.Random()
	two := partsOf(t, h.facilityBundle("two.bundle", transfer, logs[:2]))
	three := partsOf(t, h.facilityBundle("three.bundle", transfer, logs))
	one := partsOf(t, h.facilityBundle("one.bundle", transfer, logs[:1]))
	mixed := partsOf(t, h.facilityBundle("mixed.bundle", transfer, []bundle.Record{logs[0], h.note(facInst, 903)}))
	// The records of two, as the writer encoded them, so that the test's
	// encoder is known to be the format's.
	plain := appendRecord(appendRecord(nil, &logs[0]), &logs[1])
	{
		dec, err := zstd.NewReader(nil)
		if err != nil {
			t.Fatal(err)
		}
		c, _, _ := chunkFields(two)
		got, err := dec.DecodeAll(two.chunks[12:12+c], nil)
		dec.Close()
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("the test's record encoding differs from the writer's (%v)", err)
		}
	}
	oneRecord := appendRecord(nil, &logs[0])
	hugeString := append(binary.AppendUvarint(nil, 1<<30), oneRecord[1:]...) // model_uuid's length was one byte, 32
	manyCounters := appendRecord(nil, &bundle.Record{ModelUUID: logs[0].ModelUUID, Profile: "facilitydata",
		ModelName: "contentlog", Partition: logs[0].Partition, Serialized: logs[0].Serialized,
		LastSavedInstance: facInst, LastSavedCounter: 900})
	manyCounters = append(manyCounters[:len(manyCounters)-1], binary.AppendUvarint(nil, 1<<40)...)

	// A root this device has seen, but never trusted.
	strangerRoot := h.evil.ownCert(h.evil.cert)
	strangerRoot.PrivateKey = nil
	if err := h.city.db.SaveCertificate(ctx, strangerRoot, "", false); err != nil {
		t.Fatal(err)
	}
	h.evil.export(h.path("stranger.bundle"), "")

	// A root that takes the trusted root's id, with the attacker's key.
	spoofKey, err := certs.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	facRoot := h.fac.ownCert(h.fac.cert)
	spoof := *facRoot
	spoof.PrivateKey, spoof.PublicKey, spoof.Salt = spoofKey, &spoofKey.PublicKey, ids.Random()
	spoof.Serialized = spoof.Serialize() // keeps the id: it no longer matches the content
	if spoof.Signature, err = certs.Sign(spoofKey, []byte(spoof.Serialized)); err != nil {
		t.Fatal(err)
	}
	if spoof.ID != f.dataset {
		t.Fatal("the spoofed root lost the trusted id")
	}
	writeBundle(t, h.path("spoofed-root.bundle"), bundle.Header{Profile: "facilitydata", SenderInstance: homeInst,
		SenderCert: spoof.ID, Chain: []certs.Link{spoof.Link()}, Filter: []string{f.dataset}}, spoofKey, []bundle.Record{h.note(homeInst, 50)})

	// The tablet signs itself a full-facility certificate under its own.
	wide, wideKey := selfGranted(t, homeCert, "full-facility", map[string]string{"dataset_id": f.dataset}, "dataset_id")
	writeBundle(t, h.path("self-granted.bundle"), bundle.Header{Profile: "facilitydata", SenderInstance: homeInst,
		SenderCert: wide.ID, Chain: append(h.chain(h.home), wide.Link()), Filter: []string{f.dataset}}, wideKey,
		[]bundle.Record{h.note(homeInst, 51)})

	// The tablet writes where it may only read.
	classroom := ids.Random()
	writeBundle(t, h.path("read-only.bundle"), bundle.Header{Profile: "facilitydata", SenderInstance: homeInst,
		SenderCert: h.home.cert, Chain: h.chain(h.home), Filter: []string{f.dataset + ":allusers-ro"}}, homeCert.PrivateKey,
		[]bundle.Record{{ModelUUID: classroom, Profile: "facilitydata", ModelName: "classroom", Partition: f.dataset + ":allusers-ro",
			Serialized:        fmt.Sprintf(`{"id":%q,"dataset_id":%q,"name":"forged"}`, classroom, f.dataset),
			LastSavedInstance: homeInst, LastSavedCounter: 52, RMC: []bundle.Counter{{Instance: homeInst, Counter: 52}}}})

	// The tablet's own partition, but records that say they are of another
	// profile.
	alienLog := logRecord(ids.Random(), f.dataset, f.learner, "c9", 0.1, homeInst, 53)
	alienLog.Profile = "otherapp"
	writeBundle(t, h.path("record-profile.bundle"), bundle.Header{Profile: "facilitydata", SenderInstance: homeInst,
		SenderCert: h.home.cert, Chain: h.chain(h.home), Filter: homeWrite}, homeCert.PrivateKey, []bundle.Record{alienLog})

	// A bundle City has applied already.
	h.fac.exec(`UPDATE classroom SET name = 'Class 5' WHERE id = ?`, f.classroom)
	h.fac.export(h.path("applied.bundle"), "")
	h.city.mustImport(h.path("applied.bundle"))

	read := func(name string) []byte {
		b, err := os.ReadFile(h.path(name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	const (
		header = iota // refused before anything is written
		body          // refused by the verifying read: one errored transfer session
		record        // applied, the record refused: the transfer is recorded
	)
	type vector struct {
		name  string
		file  []byte
		want  error  // the error kind; nil for a refused record
		why   string // for a refused record: the reason's words
		found int    // header, body or record
	}
	vectors := []vector{
		// Trust.
		{"chain rooted in a root this device knows but does not trust", read("stranger.bundle"), ErrUntrustedRoot, "", header},
		{"root certificate with the trusted root's id and another key", read("spoofed-root.bundle"), certs.ErrIDInvalid, "", header},
		// Scope.
		{"signer grants itself a certificate wider than its own", read("self-granted.bundle"), certs.ErrScopeNotSubset, "", header},
		{"signer writes where it may only read", read("read-only.bundle"), ErrOutsideScope, "", header},
		// Profile.
		{"records claiming another profile", read("record-profile.bundle"), nil, "profile", record},
		// Counts that lie.
		{"header announces more records than the body holds", signBundle(t, facKey, three.head, two.chunks), bundle.ErrCountMismatch, "", body},
		{"header announces fewer records than the body holds", signBundle(t, facKey, one.head, two.chunks), bundle.ErrCountMismatch, "", body},
		{"header's records per model do not match the body's", signBundle(t, facKey, mixed.head, two.chunks), bundle.ErrCountMismatch, "", body},
		{"chunk announces more records than it holds", signBundle(t, facKey, two.head, withChunkFields(two, func(_, _, n *uint32) { *n++ })), bundle.ErrCountMismatch, "", body},
		{"chunk announces fewer records than it holds", signBundle(t, facKey, two.head, withChunkFields(two, func(_, _, n *uint32) { *n-- })), bundle.ErrCountMismatch, "", body},
		// Sizes that lie.
		{"chunk's compressed length longer than its frame", signBundle(t, facKey, two.head, withChunkFields(two, func(c, _, _ *uint32) { *c += 4 })), bundle.ErrMalformed, "", body},
		{"chunk's compressed length shorter than its frame", signBundle(t, facKey, two.head, withChunkFields(two, func(c, _, _ *uint32) { *c -= 4 })), bundle.ErrMalformed, "", body},
		{"chunk's uncompressed length longer than its frame's", signBundle(t, facKey, two.head, withChunkFields(two, func(_, u, _ *uint32) { *u++ })), bundle.ErrMalformed, "", body},
		{"chunk's uncompressed length shorter than its frame's", signBundle(t, facKey, two.head, withChunkFields(two, func(_, u, _ *uint32) { *u-- })), bundle.ErrTooLarge, "", body},
		{"header length one byte short", signBundle(t, facKey, func() []byte {
			b := slices.Clone(two.head)
			binary.BigEndian.PutUint32(b[10:], binary.BigEndian.Uint32(b[10:])-1)
			return b
		}(), two.chunks), bundle.ErrMalformed, "", header},
		// Decompression bombs.
		{"chunk declaring 1 GiB uncompressed", signBundle(t, facKey, one.head, chunkOf(zstdFrame(t, oneRecord), uint32(len(zstdFrame(t, oneRecord))), 1<<30, 1)), bundle.ErrTooLarge, "", body},
		{"16 MiB chunk whose frame declares 1 GiB", signBundle(t, facKey, one.head, func() []byte {
			fr := rleFrame(1<<30, 8192)
			return chunkOf(fr, uint32(len(fr)), bundle.MaxChunkSize, 1)
		}()), bundle.ErrTooLarge, "", body},
		{"16 MiB chunk whose frame declares 16 MiB and holds 1 GiB of RLE blocks", signBundle(t, facKey, one.head, func() []byte {
			fr := rleFrame(bundle.MaxChunkSize, 8192)
			return chunkOf(fr, uint32(len(fr)), bundle.MaxChunkSize, 1)
		}()), bundle.ErrTooLarge, "", body},
		// A frame whose blocks produce more than it declares is malformed.
		{"1 MiB chunk whose compressed blocks expand to 256 MiB", signBundle(t, facKey, one.head, func() []byte {
			fr := lyingFrame(t, 256<<20, 1<<20)
			return chunkOf(fr, uint32(len(fr)), 1<<20, 1)
		}()), bundle.ErrMalformed, "", body},
		{"record claiming a 1 GiB string", signBundle(t, facKey, one.head, chunkFor(t, hugeString, 1)), bundle.ErrMalformed, "", body},
		{"record claiming 2^40 record-max counters", signBundle(t, facKey, one.head, chunkFor(t, manyCounters, 1)), bundle.ErrMalformed, "", body},
		// Replay.
		{"bundle applied before", read("applied.bundle"), store.ErrAlreadyApplied, "", header},
	}
	// Every kind of refusal an import reports; each vector's error must be
	// its own kind and none of the others.
	kinds := []error{bundle.ErrBadMagic, bundle.ErrUnsupportedVersion, bundle.ErrTruncated, bundle.ErrMalformed,
		bundle.ErrTooLarge, bundle.ErrCountMismatch, bundle.ErrHashMismatch, bundle.ErrBadSignature, bundle.ErrTrailingData,
		bundle.ErrUnverified, certs.ErrSignatureInvalid, certs.ErrIDInvalid, certs.ErrChainBroken, certs.ErrScopeNotSubset,
		certs.ErrRootScopeInvalid, certs.ErrProfileInvalid, certs.ErrUnknownScopeDefinition, certs.ErrMalformed,
		ErrUntrustedRoot, ErrOutsideScope, ErrWrongProfile, ErrNoReadScope, store.ErrAlreadyApplied}

	for i, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			p := h.path(fmt.Sprintf("hostile-%02d.bundle", i))
			if err := os.WriteFile(p, v.file, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := h.city.db.Serialize(ctx); err != nil { // nothing of City's own is pending
				t.Fatal(err)
			}
			before := tableDigests(t, h.city)
			sessions := dump(t, h.city.app, sessionTables)
			runtime.GC()
			a0, t0 := allocated(), time.Now()
			r, err := h.city.importBundle(p)
			alloc, took := allocated()-a0, time.Since(t0)
			t.Logf("%d bytes: %v; allocated %d KiB in %v", len(v.file), err, alloc>>10, took)
			if alloc > maxImportAlloc || took > maxImportTime {
				t.Errorf("refusing it allocated %d MiB and took %v", alloc>>20, took)
			}

			if v.want == nil {
				if err != nil {
					t.Fatalf("import: %v", err)
				}
				if r.Store.Refused == 0 || r.Store.New+r.Store.FastForward+r.Store.Conflicts+r.Store.AlreadyHave != 0 {
					t.Errorf("not every record was refused: %+v", r.Store)
				}
				for _, rf := range r.Store.Refusals {
					if !strings.Contains(rf.Reason, v.why) {
						t.Errorf("refusal %+v does not say %q", rf, v.why)
					}
				}
			} else {
				if err == nil {
					t.Fatal("imported")
				}
				if !errors.Is(err, v.want) {
					t.Fatalf("error %q, want %q", err, v.want)
				}
				for _, k := range kinds {
					if k != v.want && errors.Is(err, k) {
						t.Errorf("error %q is also %q", err, k)
					}
				}
				if !hasHint(err) {
					t.Errorf("error %q has no hint", err)
				}
			}

			after := tableDigests(t, h.city)
			var allowed []string
			switch v.found {
			case body:
				allowed = sessionTables
			case record:
				allowed = appliedTables
			}
			for _, tb := range changedTables(before, after) {
				if !slices.Contains(allowed, tb) {
					t.Errorf("%s changed", tb)
				}
			}
			if v.found == body {
				// Only new rows, and each says the transfer failed for good.
				now := dump(t, h.city.app, sessionTables)
				for _, tb := range sessionTables {
					for _, row := range sessions[tb] {
						if !slices.Contains(now[tb], row) {
							t.Errorf("%s: row changed: %s", tb, row)
						}
					}
					if len(now[tb]) != len(sessions[tb])+1 {
						t.Errorf("%s: %d rows, was %d", tb, len(now[tb]), len(sessions[tb]))
					}
				}
				if n := h.city.count(`SELECT count(*) FROM morango_transfersession WHERE active OR transfer_stage_status != 'completed' AND transfer_stage_status != 'errored'`); n != 0 {
					t.Errorf("%d transfer sessions left active", n)
				}
			}
		})
	}
}

// TestReplayedBundles carries old bundles to a device again: the same
// bundle twice, and an old bundle of a peer after a newer one of the same
// peer, arriving out of order. The first is refused with its own error and
// writes nothing at all; the second is applied and changes nothing but the
// record that it was: every record is one the device already has, an
// erased record stays erased, an update stays updated.
func TestReplayedBundles(t *testing.T) {
	h := newHostile(t)
	f := h.f
	// Two bundles of the facility for anyone, an older and a newer.
	h.fac.export(h.path("old.bundle"), "")
	h.fac.exec(`UPDATE contentlog SET progress = 1 WHERE id = ?`, f.learnerLog)
	h.fac.exec(`INSERT INTO morango_harddeletedmodels (id, profile) VALUES (?, 'facilitydata')`, f.note)
	h.fac.exec(`DELETE FROM adminnote WHERE id = ?`, f.note)
	newer := ids.Random()
	h.fac.exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES (?, ?, 'after the old bundle')`, newer, f.dataset)
	h.fac.export(h.path("new.bundle"), "")

	if r := h.city.mustImport(h.path("new.bundle")); r.Store.FastForward != 2 || r.Store.New != 1 {
		t.Fatalf("the newer bundle: %+v", r.Store)
	}
	// City changes the learner's log again after the newer bundle.
	h.city.exec(`UPDATE contentlog SET progress = 0.2 WHERE id = ?`, f.otherLog)
	if _, err := h.city.db.Serialize(t.Context()); err != nil {
		t.Fatal(err)
	}
	state := h.city.syncState()

	t.Run("old bundle after a newer one", func(t *testing.T) {
		before := tableDigests(t, h.city)
		r := h.city.mustImport(h.path("old.bundle"))
		if s := r.Store; s.Received == 0 || s.AlreadyHave != s.Received || s.New+s.FastForward+s.Conflicts+s.Refused != 0 ||
			s.Deserialize.Written+s.Deserialize.Deleted != 0 {
			t.Errorf("the old bundle: %+v", s)
		}
		for _, tb := range changedTables(before, tableDigests(t, h.city)) {
			if !slices.Contains(appliedTables, tb) {
				t.Errorf("%s changed", tb)
			}
		}
		if d := diffStates(state, h.city.syncState()); d != "" {
			t.Errorf("the old bundle changed the data:\n%s", d)
		}
		if n := h.city.count(`SELECT count(*) FROM adminnote WHERE id = ?`, f.note); n != 0 {
			t.Error("the erased note came back")
		}
		if n := h.city.count(`SELECT count(*) FROM contentlog WHERE id = ? AND progress = 1`, f.learnerLog); n != 1 {
			t.Error("the update was undone")
		}
	})

	for _, name := range []string{"old.bundle", "new.bundle", "first.bundle"} {
		t.Run(name+" again", func(t *testing.T) {
			before := tableDigests(t, h.city)
			_, err := h.city.importBundle(h.path(name))
			if !errors.Is(err, store.ErrAlreadyApplied) || !IsAlreadyApplied(err) {
				t.Fatalf("error %v, want ErrAlreadyApplied", err)
			}
			if !hasHint(err) {
				t.Errorf("error %q has no hint", err)
			}
			if c := changedTables(before, tableDigests(t, h.city)); len(c) != 0 {
				t.Errorf("changed: %q", c)
			}
		})
	}

	// A copy of a bundle under another name is the same transfer.
	t.Run("renamed copy", func(t *testing.T) {
		b, err := os.ReadFile(h.path("new.bundle"))
		if err != nil {
			t.Fatal(err)
		}
		p := h.path("copy-of-new.bundle")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		before := tableDigests(t, h.city)
		if _, err := h.city.importBundle(p); !IsAlreadyApplied(err) {
			t.Errorf("error %v, want ErrAlreadyApplied", err)
		}
		if c := changedTables(before, tableDigests(t, h.city)); len(c) != 0 {
			t.Errorf("changed: %q", c)
		}
	})
}

// TestRecordFieldsOutsideScope: a record's partition is what the scope
// checks look at, but its fields are what reach the app. A tablet with a
// single-user certificate puts, in its own partition, an admin note, a new
// user and a log of another learner: records whose fields put them in
// partitions it may not write. They must be refused and reach no app table.
func TestRecordFieldsOutsideScope(t *testing.T) {
	h := newHostile(t)
	f := h.f
	inst := h.home.instance()
	own := f.dataset + ":user-rw:" + f.learner
	note, user, log := ids.Random(), ids.Random(), ids.Random()
	recs := []bundle.Record{
		{ModelUUID: note, Profile: "facilitydata", ModelName: "adminnote", Partition: own,
			Serialized:        fmt.Sprintf(`{"id":%q,"dataset_id":%q,"body":"forged by the tablet"}`, note, f.dataset),
			LastSavedInstance: inst, LastSavedCounter: 5, RMC: []bundle.Counter{{Instance: inst, Counter: 5}}},
		{ModelUUID: user, Profile: "facilitydata", ModelName: "facilityuser", Partition: own,
			Serialized:        fmt.Sprintf(`{"id":%q,"dataset_id":%q,"username":"admin2"}`, user, f.dataset),
			LastSavedInstance: inst, LastSavedCounter: 6, RMC: []bundle.Counter{{Instance: inst, Counter: 6}}},
		logRecord(log, f.dataset, f.other, "c1", 0.99, inst, 7),
	}
	recs[2].Partition = own
	writeBundle(t, h.path("fields.bundle"), bundle.Header{Profile: "facilitydata", SenderInstance: inst, SenderCert: h.home.cert,
		Chain: h.chain(h.home), Filter: []string{own}}, h.home.ownCert(h.home.cert).PrivateKey, recs)
	for _, d := range []*device{h.fac, h.city} {
		before := d.syncState()
		r := d.mustImport(h.path("fields.bundle"))
		if r.Store.Refused != 3 || r.Store.New != 0 || r.Store.Received != 3 {
			t.Errorf("%s: %+v, want the 3 records received and refused", d.name, r.Store)
		}
		if diff := diffStates(before, d.syncState()); diff != "" {
			t.Errorf("%s: the records reached the data:\n%s", d.name, diff)
		}
	}
}

// TestRecordDataSQLiteCannotRead: a signer's records whose data Go reads
// but SQLite would not, or not the same (an object followed by more text,
// nesting deeper than SQLite reads, a repeated key, a key with a NUL), are
// refused as the
// bundle is read, with the reason; the signer's other records are
// imported.
func TestRecordDataSQLiteCannotRead(t *testing.T) {
	h := newHostile(t)
	f := h.f
	inst := h.home.instance()
	own := f.dataset + ":user-rw:" + f.learner
	trailing := logRecord(ids.Random(), f.dataset, f.learner, "c1", 0.5, inst, 5)
	trailing.Serialized += ` {"progress":1}`
	deep := logRecord(ids.Random(), f.dataset, f.learner, "c2", 0.5, inst, 6)
	deep.Serialized = strings.TrimSuffix(deep.Serialized, "}") + `,"x":` + strings.Repeat("[", 600) + strings.Repeat("]", 600) + "}"
	good := logRecord(ids.Random(), f.dataset, f.learner, "c3", 0.5, inst, 7)
	// Go reads the last of a repeated key, SQLite the first: another
	// learner's partition hidden in front of the signer's own.
	twice := logRecord(ids.Random(), f.dataset, f.learner, "c4", 0.5, inst, 8)
	twice.Serialized = strings.Replace(twice.Serialized, `"user_id"`, fmt.Sprintf(`"user_id":%q,"user_id"`, f.other), 1)
	// SQLite matches a key only up to an escaped NUL: for json_extract,
	// "user_id\u0000x" is user_id, and the first one wins again.
	nul := logRecord(ids.Random(), f.dataset, f.learner, "c5", 0.5, inst, 9)
	nul.Serialized = strings.Replace(nul.Serialized, `"user_id"`, fmt.Sprintf(`"user_id\u0000x":%q,"user_id"`, f.other), 1)
	writeBundle(t, h.path("unreadable.bundle"), bundle.Header{Profile: "facilitydata", SenderInstance: inst, SenderCert: h.home.cert,
		Chain: h.chain(h.home), Filter: []string{own}}, h.home.ownCert(h.home.cert).PrivateKey, []bundle.Record{trailing, deep, good, twice, nul})
	for _, d := range []*device{h.fac, h.city} {
		r := d.mustImport(h.path("unreadable.bundle"))
		if r.Store.Refused != 4 || r.Store.New != 1 {
			t.Errorf("%s: %+v", d.name, r.Store)
			continue
		}
		var reasons []string
		for _, x := range r.Store.Refusals {
			reasons = append(reasons, x.Reason)
		}
		if !slices.ContainsFunc(reasons, func(s string) bool { return strings.Contains(s, "something follows it") }) ||
			!slices.ContainsFunc(reasons, func(s string) bool { return strings.Contains(s, "nests deeper than 500 levels") }) ||
			!slices.ContainsFunc(reasons, func(s string) bool { return strings.Contains(s, "repeats a key") }) ||
			!slices.ContainsFunc(reasons, func(s string) bool { return strings.Contains(s, "NUL") }) {
			t.Errorf("%s: reasons %q", d.name, reasons)
		}
	}
}

// heapPeak samples the heap in use while fn runs and returns the most it
// saw, and the heap in use after fn and a collection.
func heapPeak(fn func()) (peak, after uint64) {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapAlloc)
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	fn()
	close(stop)
	<-done
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return peak, m.HeapAlloc
}

// TestHostileSignerMemory: a device with a valid certificate signs a small
// bundle of large records (4 MiB each, which compress to almost nothing),
// all of which City refuses: some outside the signer's scope, refused as
// they are read, some of another profile, refused as they are merged.
// Importing it must hold a bounded number of them in memory at once, and
// the result, which lists the refusals, must not keep them alive.
func TestHostileSignerMemory(t *testing.T) {
	h := newHostile(t)
	f := h.f
	inst := h.home.instance()
	big := strings.Repeat("a", 4<<20)
	for _, c := range []struct{ name, partition, profile string }{
		{"outside the signer's scope", f.dataset + ":user-rw:" + f.other, "facilitydata"},
		{"another profile", f.dataset + ":user-rw:" + f.learner, "otherapp"},
	} {
		t.Run(c.name, func(t *testing.T) {
			recs := make([]bundle.Record, 100)
			for i := range recs {
				id := ids.Random()
				recs[i] = bundle.Record{ModelUUID: id, Profile: c.profile, ModelName: "contentlog", Partition: c.partition,
					Serialized: `{"id":"` + id + `","x":"` + big + `"}`, LastSavedInstance: inst, LastSavedCounter: int64(100 + i),
					RMC: []bundle.Counter{{Instance: inst, Counter: int64(100 + i)}}}
			}
			p := h.path("large-" + c.profile + ".bundle")
			writeBundle(t, p, bundle.Header{Profile: "facilitydata", SenderInstance: inst, SenderCert: h.home.cert,
				Chain: h.chain(h.home), Filter: []string{f.dataset + ":user-rw:" + f.learner}}, h.home.ownCert(h.home.cert).PrivateKey, recs)
			recs = nil
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			runtime.GC()
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			var r *ImportResult
			peak, after := heapPeak(func() { r, err = h.city.importBundle(p) })
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d KiB bundle: heap %d MiB before, %d MiB at most, %d MiB after with the result", fi.Size()>>10,
				m.HeapAlloc>>20, peak>>20, after>>20)
			if r.Store.Refused != 100 {
				t.Errorf("refused %d of 100", r.Store.Refused)
			}
			if peak > m.HeapAlloc+160<<20 {
				t.Errorf("the import held %d MiB", (peak-m.HeapAlloc)>>20)
			}
			if after > m.HeapAlloc+32<<20 {
				t.Errorf("the result keeps %d MiB alive", (after-m.HeapAlloc)>>20)
			}
			runtime.KeepAlive(r)
		})
	}
}

func TestJSONShape(t *testing.T) {
	for s, want := range map[string][2]int{
		`{}`:                            {1, 0},
		`{"a":"[[[{{:"}`:                {1, 1},
		`{"a":"\"[[:","b":[[1]]}`:       {3, 2},
		`{"a":{"b":{"c":[]}},"d":[]}`:   {4, 2},
		`{"a":"\\","b":[{"x":1}]}`:      {3, 2},
		`{"a":1,"a":2}`:                 {1, 2},
		`{"a":{"x":1,"y":2},"b":"c:d"}`: {2, 2},
	} {
		if d, k := jsonShape(s); d != want[0] || k != want[1] {
			t.Errorf("jsonShape(%s) = %d, %d; want %d, %d", s, d, k, want[0], want[1])
		}
	}
}
