package bundle

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/morango-sync/morango/certs"
	"github.com/morango-sync/morango/fsic"
)

// Version is the format version this package writes, and the only one it
// reads.
const Version = 1

// Limits of the format. A reader checks every size it reads against them
// before allocating.
const (
	// MaxHeaderSize bounds the JSON header of a bundle or manifest.
	MaxHeaderSize = 16 << 20
	// MaxChunkSize bounds the uncompressed content of one chunk, and so
	// the encoded size of one record.
	MaxChunkSize = 16 << 20
	// MaxChainLength bounds the certificate chain in a header.
	MaxChainLength = 16
	// MaxFilterPrefixes bounds the partition prefixes of a header's filter.
	MaxFilterPrefixes = 1024
	// MaxModels bounds the models a bundle header counts records of.
	MaxModels = 1024
	// MaxSignatureSize bounds the signature (an 8192-bit RSA key).
	MaxSignatureSize = 1024
	// MaxDeviceName bounds a manifest's device name, in bytes.
	MaxDeviceName = 256
)

const (
	magicSize   = 8
	preambleLen = magicSize + 2 + 4 // magic, version, header length
)

var (
	bundleMagic   = [magicSize]byte{0x89, 'M', 'G', 'B', '\r', '\n', 0x1a, '\n'}
	manifestMagic = [magicSize]byte{0x89, 'M', 'G', 'M', '\r', '\n', 0x1a, '\n'}
)

const (
	kindBundle   = "bundle"
	kindManifest = "manifest"
)

// Header is the signed header of a bundle: who wrote it, for whom, what it
// covers and how many records it carries.
type Header struct {
	// Profile is the sync profile.
	Profile string `json:"profile"`
	// TransferID is a random id (32 lower-case hex) naming this bundle.
	TransferID string `json:"transfer_id"`
	// Created is when the bundle was written: RFC 3339, UTC, whole seconds.
	Created string `json:"created"`
	// SenderInstance is the id of the instance that wrote the bundle.
	SenderInstance string `json:"sender_instance_id"`
	// SenderCert is the id of the certificate whose key signs the bundle.
	SenderCert string `json:"sender_certificate_id"`
	// Chain is the signer's certificate chain, root first; its last link
	// is SenderCert.
	Chain []certs.Link `json:"chain"`
	// RecipientInstance is the instance the bundle is for; "" means anyone.
	RecipientInstance string `json:"recipient_instance_id"`
	// RecipientCert is the recipient's certificate; "" exactly when
	// RecipientInstance is.
	RecipientCert string `json:"recipient_certificate_id"`
	// Filter lists the partition prefixes the bundle covers.
	Filter []string `json:"filter"`
	// FSIC holds the sender's counters for Filter. A Reader decodes it,
	// and PeerFSIC, only once the file is read to its end and verified
	// (Next has returned io.EOF): until then both are empty, so that a file
	// nobody signed costs no more than its size to look at.
	FSIC fsic.V2 `json:"fsic"`
	// PeerFSIC holds the counters the bundle was computed against, or nil
	// when it was exported without a manifest.
	PeerFSIC *fsic.V2 `json:"peer_fsic"`
	// Counts holds the number of records per model name. A writer drops
	// zero entries.
	Counts map[string]int64 `json:"counts"`
	// Records is the number of records in the body: the sum of Counts.
	Records int64 `json:"records"`
}

// Manifest is a signed statement of what a device holds under a filter,
// and who it is.
type Manifest struct {
	// Profile is the sync profile.
	Profile string `json:"profile"`
	// Created is when the manifest was written: RFC 3339, UTC, whole seconds.
	Created string `json:"created"`
	// Instance is the id of the instance the manifest speaks for.
	Instance string `json:"instance_id"`
	// CertID is the id of the certificate whose key signs the manifest.
	CertID string `json:"certificate_id"`
	// Chain is that certificate's chain, root first.
	Chain []certs.Link `json:"chain"`
	// Filter lists the partition prefixes the manifest speaks for.
	Filter []string `json:"filter"`
	// FSIC holds the device's counters for Filter. ReadManifest decodes
	// it only once the signature is checked; a header-only read leaves it
	// empty.
	FSIC fsic.V2 `json:"fsic"`
	// Name is a device name for people; it may be empty.
	Name string `json:"device_name"`
}

// bundleJSON and manifestJSON are the headers as written: the kind first,
// then the fields in the order of the struct.
type bundleJSON struct {
	Kind string `json:"kind"`
	Header
}

type manifestJSON struct {
	Kind string `json:"kind"`
	Manifest
}

// encodeHeader returns the canonical JSON of h after checking it.
func encodeHeader(h *Header) ([]byte, error) {
	n := normalHeader(h)
	if err := checkHeader(&n); err != nil {
		return nil, err
	}
	return canonicalJSON(bundleJSON{Kind: kindBundle, Header: n})
}

// encodeManifest returns the canonical JSON of m after checking it.
func encodeManifest(m *Manifest) ([]byte, error) {
	n := normalManifest(m)
	if err := checkManifest(&n); err != nil {
		return nil, err
	}
	return canonicalJSON(manifestJSON{Kind: kindManifest, Manifest: n})
}

// bundleWire and manifestWire are the headers as written, with the
// fields whose size the sender chooses left undecoded: decodeHeader bounds
// the lists and maps before it decodes them, and leaves the counters, the
// largest part, to decodeCounters, once the file is verified.
type bundleWire struct {
	Kind              string          `json:"kind"`
	Profile           string          `json:"profile"`
	TransferID        string          `json:"transfer_id"`
	Created           string          `json:"created"`
	SenderInstance    string          `json:"sender_instance_id"`
	SenderCert        string          `json:"sender_certificate_id"`
	Chain             json.RawMessage `json:"chain"`
	RecipientInstance string          `json:"recipient_instance_id"`
	RecipientCert     string          `json:"recipient_certificate_id"`
	Filter            json.RawMessage `json:"filter"`
	FSIC              json.RawMessage `json:"fsic"`
	PeerFSIC          json.RawMessage `json:"peer_fsic"`
	Counts            json.RawMessage `json:"counts"`
	Records           int64           `json:"records"`
}

type manifestWire struct {
	Kind     string          `json:"kind"`
	Profile  string          `json:"profile"`
	Created  string          `json:"created"`
	Instance string          `json:"instance_id"`
	CertID   string          `json:"certificate_id"`
	Chain    json.RawMessage `json:"chain"`
	Filter   json.RawMessage `json:"filter"`
	FSIC     json.RawMessage `json:"fsic"`
	Name     string          `json:"device_name"`
}

// counters are a header's counters as written, decoded by decodeCounters.
type counters struct {
	fsic, peer json.RawMessage
}

// decodeHeader parses a bundle header and accepts it only if it is the
// canonical encoding of a valid header. It does not decode the counters
// (FSIC, PeerFSIC): it returns them for decodeCounters. What it decodes is
// bounded by the format's limits before it is decoded, so that a header
// costs about its size to parse whatever it holds.
func decodeHeader(raw []byte) (*Header, counters, error) {
	var w bundleWire
	if err := wireJSON(raw, &w, kindBundle, func() string { return w.Kind }); err != nil {
		return nil, counters{}, err
	}
	h := &Header{Profile: w.Profile, TransferID: w.TransferID, Created: w.Created, SenderInstance: w.SenderInstance,
		SenderCert: w.SenderCert, RecipientInstance: w.RecipientInstance, RecipientCert: w.RecipientCert, Records: w.Records}
	err := decodeList("certificate chain", w.Chain, MaxChainLength, &h.Chain)
	if err == nil {
		err = decodeList("filter", w.Filter, MaxFilterPrefixes, &h.Filter)
	}
	if err == nil {
		err = decodeList("counts", w.Counts, MaxModels, &h.Counts)
	}
	if err != nil {
		return nil, counters{}, err
	}
	n := normalHeader(h)
	if err := checkHeader(&n); err != nil {
		return nil, counters{}, err
	}
	if err := sameJSON(w.Chain, n.Chain); err != nil {
		return nil, counters{}, err
	}
	if err := sameJSON(w.Filter, n.Filter); err != nil {
		return nil, counters{}, err
	}
	if err := sameJSON(w.Counts, n.Counts); err != nil {
		return nil, counters{}, err
	}
	return &n, counters{fsic: w.FSIC, peer: w.PeerFSIC}, nil
}

// decodeCounters decodes and checks the counters decodeHeader left aside.
func (h *Header) decodeCounters(c counters) error {
	v, err := decodeFSIC("fsic", c.fsic)
	if err != nil {
		return err
	}
	var peer *fsic.V2
	if !bytes.Equal(c.peer, []byte("null")) {
		p, err := decodeFSIC("peer_fsic", c.peer)
		if err != nil {
			return err
		}
		peer = &p
	}
	h.FSIC, h.PeerFSIC = v, peer
	return nil
}

// decodeManifest is decodeHeader for manifests.
func decodeManifest(raw []byte) (*Manifest, counters, error) {
	var w manifestWire
	if err := wireJSON(raw, &w, kindManifest, func() string { return w.Kind }); err != nil {
		return nil, counters{}, err
	}
	m := &Manifest{Profile: w.Profile, Created: w.Created, Instance: w.Instance, CertID: w.CertID, Name: w.Name}
	err := decodeList("certificate chain", w.Chain, MaxChainLength, &m.Chain)
	if err == nil {
		err = decodeList("filter", w.Filter, MaxFilterPrefixes, &m.Filter)
	}
	if err != nil {
		return nil, counters{}, err
	}
	n := normalManifest(m)
	if err := checkManifest(&n); err != nil {
		return nil, counters{}, err
	}
	if err := sameJSON(w.Chain, n.Chain); err != nil {
		return nil, counters{}, err
	}
	if err := sameJSON(w.Filter, n.Filter); err != nil {
		return nil, counters{}, err
	}
	return &n, counters{fsic: w.FSIC}, nil
}

// decodeCounters decodes and checks the counters decodeManifest left
// aside.
func (m *Manifest) decodeCounters(c counters) error {
	v, err := decodeFSIC("fsic", c.fsic)
	if err == nil {
		m.FSIC = v
	}
	return err
}

// wireJSON decodes a header as written into w, checks its kind, and checks
// that it is written as its canonical encoding, the undecoded fields as
// they are: each of those is checked by whoever decodes it.
// An unknown field makes it not canonical.
func wireJSON(raw []byte, w any, want string, kind func() string) error {
	// The canonical encoding is valid UTF-8; the decoder would turn each
	// invalid byte into three, and the encoder back into six, before the
	// comparison could refuse them.
	if !utf8.Valid(raw) {
		return malformed("not valid UTF-8")
	}
	if err := decodeJSON(raw, w); err != nil {
		return err
	}
	if k := kind(); k != want {
		return fmt.Errorf("header kind %q, want %q: %w", short(k), want, ErrMalformed)
	}
	return sameJSON(raw, w)
}

// decodeList decodes raw, a JSON array or object, into v once it has
// counted at most limit entries in it. The count is one pass over the
// bytes: raw is valid, compact JSON (wireJSON checked it).
func decodeList(what string, raw json.RawMessage, limit int, v any) error {
	if entries(raw, limit) > limit {
		return fmt.Errorf("header: %s of more than %d entries: %w", what, limit, ErrTooLarge)
	}
	return decodeJSON(raw, v)
}

// entries counts the members of raw, a valid JSON array or object, up to
// one past limit: the commas outside strings and nested values.
func entries(raw []byte, limit int) int {
	if len(raw) < 3 || (raw[0] != '[' && raw[0] != '{') {
		return 0
	}
	n, depth, str, esc := 1, 0, false, false
	for _, c := range raw[1 : len(raw)-1] {
		switch {
		case str:
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				str = false
			}
		case c == '"':
			str = true
		case c == '[' || c == '{':
			depth++
		case c == ']' || c == '}':
			depth--
		case c == ',' && depth == 0:
			if n++; n > limit {
				return n
			}
		}
	}
	return n
}

// decodeFSIC decodes counters and accepts them only in canonical form.
func decodeFSIC(field string, raw json.RawMessage) (fsic.V2, error) {
	var v fsic.V2
	if err := decodeJSON(raw, &v); err != nil {
		return fsic.V2{}, err
	}
	n := normalFSIC(v)
	if err := checkFSIC(field, &n); err != nil {
		return fsic.V2{}, err
	}
	if err := sameJSON(raw, n); err != nil {
		return fsic.V2{}, err
	}
	return n, nil
}

// sameJSON requires raw to be the canonical encoding of v. The encoding is
// compared as it is written, not kept.
func sameJSON(raw json.RawMessage, v any) error {
	c := &compareWriter{rest: raw, same: true}
	e := json.NewEncoder(c)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		return fmt.Errorf("encode header: %w", err)
	}
	if !c.same || len(c.rest) != 0 || !c.newline {
		return fmt.Errorf("header is not in canonical form: %w", ErrMalformed)
	}
	return nil
}

// compareWriter compares what is written with rest, followed by the one
// newline json.Encoder ends a value with.
type compareWriter struct {
	rest    []byte
	same    bool
	newline bool
}

func (c *compareWriter) Write(p []byte) (int, error) {
	n := len(p)
	if !c.same {
		return n, nil
	}
	k := min(len(p), len(c.rest))
	if !bytes.Equal(p[:k], c.rest[:k]) {
		c.same = false
		return n, nil
	}
	c.rest, p = c.rest[k:], p[k:]
	if len(p) > 0 {
		c.same = !c.newline && len(p) == 1 && p[0] == '\n'
		c.newline = true
	}
	return n, nil
}

// decodeJSON decodes raw into v. It reads raw in place; an unknown field
// is left for the comparison with the canonical encoding to refuse.
func decodeJSON(raw []byte, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("header: %w: %v", ErrMalformed, err)
	}
	return nil
}

func canonicalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		return nil, fmt.Errorf("encode header: %w", err)
	}
	out := b.Bytes()
	return out[:len(out)-1], nil // Encode ends with a newline
}

// normalHeader returns a copy of h in the form that is written: empty lists
// and maps instead of nil ones, no zero counts. It shares no map or slice
// that it changes with h.
func normalHeader(h *Header) Header {
	n := *h
	n.Chain = nonNil(n.Chain)
	n.Filter = nonNil(n.Filter)
	n.FSIC = normalFSIC(h.FSIC)
	if h.PeerFSIC != nil {
		p := normalFSIC(*h.PeerFSIC)
		n.PeerFSIC = &p
	}
	n.Counts = make(map[string]int64, len(h.Counts))
	for k, c := range h.Counts {
		if c != 0 {
			n.Counts[k] = c
		}
	}
	return n
}

func normalManifest(m *Manifest) Manifest {
	n := *m
	n.Chain = nonNil(n.Chain)
	n.Filter = nonNil(n.Filter)
	n.FSIC = normalFSIC(m.FSIC)
	return n
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func normalFSIC(v fsic.V2) fsic.V2 {
	return fsic.V2{Super: normalPartitions(v.Super), Sub: normalPartitions(v.Sub)}
}

func normalPartitions(p fsic.Partitions) fsic.Partitions {
	n := make(fsic.Partitions, len(p))
	for k, c := range p {
		if c == nil {
			c = fsic.Counters{}
		}
		n[k] = c
	}
	return n
}

// checkHeader applies the rules of the spec's bundle header table.
func checkHeader(h *Header) error {
	if h.Profile == "" {
		return malformed("profile is empty")
	}
	if err := checkID("transfer_id", h.TransferID); err != nil {
		return err
	}
	if err := checkCreated(h.Created); err != nil {
		return err
	}
	if err := checkID("sender_instance_id", h.SenderInstance); err != nil {
		return err
	}
	if err := checkID("sender_certificate_id", h.SenderCert); err != nil {
		return err
	}
	if err := checkChain(h.Chain, h.SenderCert); err != nil {
		return err
	}
	if (h.RecipientInstance == "") != (h.RecipientCert == "") {
		return malformed("recipient instance and certificate must both be set or both be empty")
	}
	if h.RecipientInstance != "" {
		if err := checkID("recipient_instance_id", h.RecipientInstance); err != nil {
			return err
		}
		if err := checkID("recipient_certificate_id", h.RecipientCert); err != nil {
			return err
		}
	}
	if err := checkStrings(h.Profile, h.Filter); err != nil {
		return err
	}
	if len(h.Counts) > MaxModels {
		return fmt.Errorf("header: counts of %d models (at most %d): %w", len(h.Counts), MaxModels, ErrTooLarge)
	}
	if err := checkFSIC("fsic", &h.FSIC); err != nil {
		return err
	}
	if h.PeerFSIC != nil {
		if err := checkFSIC("peer_fsic", h.PeerFSIC); err != nil {
			return err
		}
	}
	if h.Records < 0 {
		return malformed("negative record count %d", h.Records)
	}
	var sum int64
	for model, n := range h.Counts {
		if !utf8.ValidString(model) {
			return malformed("model name %q is not valid UTF-8", short(model))
		}
		if n <= 0 {
			return malformed("model %q has record count %d", short(model), n)
		}
		if sum > h.Records-n {
			return malformed("counts per model add up to more than the %d records", h.Records)
		}
		sum += n
	}
	if sum != h.Records {
		return malformed("counts per model add up to %d, not the %d records", sum, h.Records)
	}
	return nil
}

// checkManifest applies the rules of the spec's manifest header table.
func checkManifest(m *Manifest) error {
	if m.Profile == "" {
		return malformed("profile is empty")
	}
	if err := checkCreated(m.Created); err != nil {
		return err
	}
	if err := checkID("instance_id", m.Instance); err != nil {
		return err
	}
	if err := checkID("certificate_id", m.CertID); err != nil {
		return err
	}
	if err := checkChain(m.Chain, m.CertID); err != nil {
		return err
	}
	if err := checkStrings(m.Profile, m.Filter); err != nil {
		return err
	}
	if err := checkFSIC("fsic", &m.FSIC); err != nil {
		return err
	}
	if len(m.Name) > MaxDeviceName {
		return fmt.Errorf("header: device name of %d bytes (at most %d): %w", len(m.Name), MaxDeviceName, ErrTooLarge)
	}
	if !utf8.ValidString(m.Name) {
		return malformed("device name is not valid UTF-8")
	}
	return nil
}

// short clips a string the file chose, for an error message: a name of
// megabytes is no use to anyone reading it.
func short(s string) string {
	const most = 100
	if len(s) <= most {
		return s
	}
	i := most
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("header: "+format+": %w", append(args, ErrMalformed)...)
}

// checkID requires 32 lower-case hex characters.
func checkID(field, id string) error {
	if len(id) != 32 {
		return malformed("%s %q is not a 32-character hex id", field, short(id))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return malformed("%s %q is not a 32-character hex id", field, short(id))
		}
	}
	return nil
}

func checkCreated(s string) error {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil || t.Location() != time.UTC || t.Format(time.RFC3339) != s {
		return malformed("created %q is not an RFC 3339 UTC time in whole seconds", short(s))
	}
	return nil
}

func checkChain(chain []certs.Link, signer string) error {
	if len(chain) > MaxChainLength {
		return fmt.Errorf("header: certificate chain of %d links (at most %d): %w", len(chain), MaxChainLength, ErrTooLarge)
	}
	if len(chain) == 0 {
		return malformed("certificate chain is empty")
	}
	for _, l := range chain {
		if !utf8.ValidString(l.ID) || !utf8.ValidString(l.Serialized) || !utf8.ValidString(l.Signature) {
			return malformed("certificate chain is not valid UTF-8")
		}
	}
	if last := chain[len(chain)-1].ID; last != signer {
		return malformed("chain ends with certificate %q, not the signer %q", short(last), short(signer))
	}
	return nil
}

func checkStrings(profile string, filter []string) error {
	if len(filter) > MaxFilterPrefixes {
		return fmt.Errorf("header: filter of %d prefixes (at most %d): %w", len(filter), MaxFilterPrefixes, ErrTooLarge)
	}
	if !utf8.ValidString(profile) {
		return malformed("profile is not valid UTF-8")
	}
	for _, p := range filter {
		if !utf8.ValidString(p) {
			return malformed("filter prefix %q is not valid UTF-8", short(p))
		}
	}
	return nil
}

func checkFSIC(field string, v *fsic.V2) error {
	for _, p := range []fsic.Partitions{v.Super, v.Sub} {
		for part, cs := range p {
			if !utf8.ValidString(part) {
				return malformed("%s: partition %q is not valid UTF-8", field, short(part))
			}
			for inst, c := range cs {
				if !utf8.ValidString(inst) {
					return malformed("%s: instance %q is not valid UTF-8", field, short(inst))
				}
				if c < 0 {
					return malformed("%s: negative counter %d for instance %q", field, c, short(inst))
				}
			}
		}
	}
	return nil
}
