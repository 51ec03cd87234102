package certs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
)

// Bounds on chains read from untrusted input.
const (
	// MaxChainLength is the most links a chain may have, root included.
	MaxChainLength = 16
	// maxChainBytes bounds a chain file.
	maxChainBytes = 1 << 20
	// maxLinkIDLen bounds a link's outer id (a valid one has 32 characters).
	maxLinkIDLen = 64
)

// Definitions finds scope definitions by id. A profile implements it.
type Definitions interface {
	// ScopeDefinition returns the definition with the given id and whether
	// there is one.
	ScopeDefinition(id string) (ScopeDefinition, bool)
}

// DefinitionList is a list of scope definitions that implements Definitions.
type DefinitionList []ScopeDefinition

var _ Definitions = DefinitionList(nil)

// ScopeDefinition returns the first definition with the given id.
func (l DefinitionList) ScopeDefinition(id string) (ScopeDefinition, bool) {
	for _, d := range l {
		if d.ID == id {
			return d, true
		}
	}
	return ScopeDefinition{}, false
}

func lookup(defs Definitions, id string) (ScopeDefinition, error) {
	if defs != nil {
		if d, ok := defs.ScopeDefinition(id); ok {
			return d, nil
		}
	}
	return ScopeDefinition{}, fmt.Errorf("scope definition %q: %w", id, ErrUnknownScopeDefinition)
}

// wireOnlyFields are the members the original's certificate API adds to each
// link (CertificateSerializer). They repeat the signed serialized text
// without a signature, so ParseChain accepts and ignores them.
var wireOnlyFields = []string{"parent", "profile", "salt", "scope_definition", "scope_version", "scope_params", "public_key"}

// ParseChain reads a chain file: a JSON list, root first, of objects with the
// string members "id", "serialized" and "signature" (the original's chain
// format; the extra members its certificate API writes are accepted and
// ignored, since they are not signed). It refuses anything else: other or
// duplicate members, an empty list, more than MaxChainLength links, a file
// over 1 MiB, oversized fields, data after the list. Errors wrap
// ErrMalformed. ParseChain verifies nothing: see VerifyChain.
func ParseChain(data []byte) ([]Link, error) {
	if len(data) > maxChainBytes {
		return nil, fmt.Errorf("chain of %d bytes, more than %d: %w", len(data), maxChainBytes, ErrMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("chain: %v: %w", err, ErrMalformed)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, fmt.Errorf("chain: not a JSON list: %w", ErrMalformed)
	}
	var links []Link
	for dec.More() {
		if len(links) == MaxChainLength {
			return nil, fmt.Errorf("chain: more than %d certificates: %w", MaxChainLength, ErrMalformed)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("chain: certificate %d: %v: %w", len(links)+1, err, ErrMalformed)
		}
		l, err := parseLink(raw)
		if err != nil {
			return nil, fmt.Errorf("chain: certificate %d: %w", len(links)+1, err)
		}
		links = append(links, l)
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("chain: %v: %w", err, ErrMalformed)
	}
	if err := expectEOF(dec); err != nil {
		return nil, fmt.Errorf("chain: %v: %w", err, ErrMalformed)
	}
	if len(links) == 0 {
		return nil, fmt.Errorf("chain: no certificates: %w", ErrMalformed)
	}
	return links, nil
}

func parseLink(raw json.RawMessage) (Link, error) {
	ms, err := readObject(raw)
	if err != nil {
		return Link{}, fmt.Errorf("%v: %w", err, ErrMalformed)
	}
	var l Link
	var have int
	for _, m := range ms {
		var dst *string
		switch m.name {
		case "id":
			dst = &l.ID
		case "serialized":
			dst = &l.Serialized
		case "signature":
			dst = &l.Signature
		default:
			if slices.Contains(wireOnlyFields, m.name) {
				continue
			}
			return Link{}, fmt.Errorf("unknown field %q: %w", m.name, ErrMalformed)
		}
		s, err := decodeString(m.value)
		if err != nil {
			return Link{}, fmt.Errorf("%q %v: %w", m.name, err, ErrMalformed)
		}
		*dst = s
		have++
	}
	if have != 3 {
		return Link{}, fmt.Errorf("want \"id\", \"serialized\" and \"signature\": %w", ErrMalformed)
	}
	if err := checkLink(l); err != nil {
		return Link{}, err
	}
	return l, nil
}

// checkLink bounds a link's fields.
func checkLink(l Link) error {
	switch {
	case l.ID == "" || l.Serialized == "" || l.Signature == "":
		return fmt.Errorf("empty id, serialized or signature: %w", ErrMalformed)
	case len(l.ID) > maxLinkIDLen:
		return fmt.Errorf("id of %d bytes: %w", len(l.ID), ErrMalformed)
	case len(l.Serialized) > maxSerializedLen:
		return fmt.Errorf("serialized text of %d bytes, more than %d: %w", len(l.Serialized), maxSerializedLen, ErrMalformed)
	case len(l.Signature) > maxSignatureLen:
		return fmt.Errorf("signature of %d bytes, more than %d: %w", len(l.Signature), maxSignatureLen, ErrMalformed)
	}
	return nil
}

// VerifyOption changes what VerifyChain requires.
type VerifyOption func(*verifyConfig)

type verifyConfig struct {
	lastID string
}

// ExpectLastID makes VerifyChain require that the chain ends with the
// certificate id (ErrChainBroken otherwise), as the original's
// save_certificate_chain does with expected_last_id.
func ExpectLastID(id string) VerifyOption {
	return func(c *verifyConfig) { c.lastID = id }
}

// VerifyChain verifies a chain, root first, and returns its certificates in
// the same order. It follows the original's save_certificate_chain and
// check_certificate, except that it never stops at a certificate the device
// already knows: every link is verified, and trust is the caller's to decide
// (typically: is the root, or some link, trusted on this device?).
//
// First the structure, for every link: bounded sizes and a well-formed
// certificate (ErrMalformed; an empty chain or one longer than
// MaxChainLength is ErrMalformed too), the link's id equal to the id inside
// its serialized text (ErrIDInvalid); the last id as expected (ExpectLastID;
// ErrChainBroken); the first certificate a root and each other's parent the
// certificate before it (ErrChainBroken). Then each certificate, root first,
// with Check against its parent: id, signature, root namespace or scope
// subset, profile. Scope definitions come from defs
// (ErrUnknownScopeDefinition when one is missing). An error about a link
// names it (1-based, "certificate 2 of 3") and its certificate id.
func VerifyChain(chain []Link, defs Definitions, opts ...VerifyOption) ([]*Certificate, error) {
	var cfg verifyConfig
	for _, o := range opts {
		o(&cfg)
	}
	n := len(chain)
	if n == 0 {
		return nil, fmt.Errorf("empty certificate chain: %w", ErrMalformed)
	}
	if n > MaxChainLength {
		return nil, fmt.Errorf("certificate chain of %d links, more than %d: %w", n, MaxChainLength, ErrMalformed)
	}
	linkErr := func(i int, id string, err error) error {
		return fmt.Errorf("certificate %d of %d (%.64s): %w", i+1, n, id, err)
	}
	certs := make([]*Certificate, n)
	for i, l := range chain {
		if err := checkLink(l); err != nil {
			return nil, linkErr(i, l.ID, err)
		}
		c, err := Deserialize(l.Serialized, l.Signature)
		if err != nil {
			return nil, linkErr(i, l.ID, err)
		}
		if c.ID != l.ID {
			return nil, linkErr(i, l.ID, fmt.Errorf("the id in its serialized text is %.64s: %w", c.ID, ErrIDInvalid))
		}
		certs[i] = c
	}
	if last := certs[n-1]; cfg.lastID != "" && last.ID != cfg.lastID {
		return nil, linkErr(n-1, last.ID, fmt.Errorf("chain ends here, not at %s: %w", cfg.lastID, ErrChainBroken))
	}
	for i, c := range certs {
		switch {
		case i == 0 && !c.IsRoot():
			return nil, linkErr(i, c.ID, fmt.Errorf("chain starts with a certificate whose parent %.64s is missing: %w", c.ParentID, ErrChainBroken))
		case i > 0 && c.ParentID != certs[i-1].ID:
			return nil, linkErr(i, c.ID, fmt.Errorf("parent is %.64s, not the certificate before it (%s): %w",
				orNone(c.ParentID), certs[i-1].ID, ErrChainBroken))
		}
	}
	for i, c := range certs {
		var parent *Certificate
		if i > 0 {
			parent = certs[i-1]
		}
		if err := c.Check(parent, defs); err != nil {
			return nil, linkErr(i, c.ID, err)
		}
	}
	return certs, nil
}
