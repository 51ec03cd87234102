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
	// FSIC holds the sender's counters for Filter.
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
	// FSIC holds the device's counters for Filter.
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

// decodeHeader parses a bundle header and accepts it only if it is the
// canonical encoding of a valid header.
func decodeHeader(raw []byte) (*Header, error) {
	var v bundleJSON
	if err := strictJSON(raw, &v); err != nil {
		return nil, err
	}
	if v.Kind != kindBundle {
		return nil, fmt.Errorf("header kind %q, want %q: %w", v.Kind, kindBundle, ErrMalformed)
	}
	again, err := encodeHeader(&v.Header)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(again, raw) {
		return nil, fmt.Errorf("header is not in canonical form: %w", ErrMalformed)
	}
	return &v.Header, nil
}

// decodeManifest is decodeHeader for manifests.
func decodeManifest(raw []byte) (*Manifest, error) {
	var v manifestJSON
	if err := strictJSON(raw, &v); err != nil {
		return nil, err
	}
	if v.Kind != kindManifest {
		return nil, fmt.Errorf("header kind %q, want %q: %w", v.Kind, kindManifest, ErrMalformed)
	}
	again, err := encodeManifest(&v.Manifest)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(again, raw) {
		return nil, fmt.Errorf("header is not in canonical form: %w", ErrMalformed)
	}
	return &v.Manifest, nil
}

func strictJSON(raw []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
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
			return malformed("model name %q is not valid UTF-8", model)
		}
		if n <= 0 {
			return malformed("model %q has record count %d", model, n)
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

func malformed(format string, args ...any) error {
	return fmt.Errorf("header: "+format+": %w", append(args, ErrMalformed)...)
}

// checkID requires 32 lower-case hex characters.
func checkID(field, id string) error {
	if len(id) != 32 {
		return malformed("%s %q is not a 32-character hex id", field, id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return malformed("%s %q is not a 32-character hex id", field, id)
		}
	}
	return nil
}

func checkCreated(s string) error {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil || t.Location() != time.UTC || t.Format(time.RFC3339) != s {
		return malformed("created %q is not an RFC 3339 UTC time in whole seconds", s)
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
		return malformed("chain ends with certificate %q, not the signer %q", last, signer)
	}
	return nil
}

func checkStrings(profile string, filter []string) error {
	if !utf8.ValidString(profile) {
		return malformed("profile is not valid UTF-8")
	}
	for _, p := range filter {
		if !utf8.ValidString(p) {
			return malformed("filter prefix %q is not valid UTF-8", p)
		}
	}
	return nil
}

func checkFSIC(field string, v *fsic.V2) error {
	for _, p := range []fsic.Partitions{v.Super, v.Sub} {
		for part, cs := range p {
			if !utf8.ValidString(part) {
				return malformed("%s: partition %q is not valid UTF-8", field, part)
			}
			for inst, c := range cs {
				if !utf8.ValidString(inst) {
					return malformed("%s: instance %q is not valid UTF-8", field, inst)
				}
				if c < 0 {
					return malformed("%s: negative counter %d for instance %q", field, c, inst)
				}
			}
		}
	}
	return nil
}
