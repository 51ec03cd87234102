package certs

import (
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/morango-sync/morango/ids"
)

// maxSerializedLen bounds a certificate's serialized text.
const maxSerializedLen = 16 << 10

// Certificate grants its holder a scope of one scope definition, signed by
// its parent's key, or by its own key for a root. It has the original's
// fields.
type Certificate struct {
	// ID is sha2_uuid of "public key string:profile:salt" (see ComputeID).
	ID string
	// ParentID is the id of the certificate that signed this one; "" for a
	// root.
	ParentID          string
	Profile           string
	ScopeDefinitionID string
	ScopeVersion      int
	// ScopeParams is the scope parameters as JSON text: an object of string
	// values. It is kept verbatim, as signed.
	ScopeParams string
	// Salt is "" for a root and a random id for a granted certificate.
	Salt      string
	PublicKey *rsa.PublicKey
	// Serialized is the signed text (see Serialize). A certificate read from
	// elsewhere keeps the text it came with; verification uses that text,
	// never a re-serialization.
	Serialized string
	// Signature is the base64 signature of Serialized.
	Signature string
	// PrivateKey is nil unless this device made the key.
	PrivateKey *rsa.PrivateKey
}

// IsRoot reports whether c has no parent.
func (c *Certificate) IsRoot() bool { return c.ParentID == "" }

// ComputeID returns the id c must have: sha2_uuid of its public key string,
// profile and salt joined with ":", leaving out the empty ones, as the
// original's calculate_uuid does (a root's salt is "", so its id hashes
// "key:profile").
func (c *Certificate) ComputeID() string {
	parts := make([]string, 0, 3)
	for _, s := range []string{PublicKeyString(c.PublicKey), c.Profile, c.Salt} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return ids.SHA2UUID(strings.Join(parts, ":"))
}

// Serialize returns the text the original signs: Python's json.dumps of
// id, parent_id (null for a root), profile, salt, scope_definition_id,
// scope_version (a number), scope_params (the parameters' JSON as a string)
// and public_key_string, in that order, with the separators ", " and ": "
// and every character outside printable ASCII escaped as \uXXXX.
func (c *Certificate) Serialize() string {
	var b strings.Builder
	b.WriteString(`{"id": `)
	writePyString(&b, c.ID)
	b.WriteString(`, "parent_id": `)
	if c.ParentID == "" {
		b.WriteString("null")
	} else {
		writePyString(&b, c.ParentID)
	}
	b.WriteString(`, "profile": `)
	writePyString(&b, c.Profile)
	b.WriteString(`, "salt": `)
	writePyString(&b, c.Salt)
	b.WriteString(`, "scope_definition_id": `)
	writePyString(&b, c.ScopeDefinitionID)
	b.WriteString(`, "scope_version": `)
	b.WriteString(strconv.Itoa(c.ScopeVersion))
	b.WriteString(`, "scope_params": `)
	writePyString(&b, c.ScopeParams)
	b.WriteString(`, "public_key_string": `)
	writePyString(&b, PublicKeyString(c.PublicKey))
	b.WriteByte('}')
	return b.String()
}

// serializedFields are the members of a serialized certificate; "salt" may
// be missing or null (then it is "").
var serializedFields = []string{"id", "parent_id", "profile", "salt", "scope_definition_id",
	"scope_version", "scope_params", "public_key_string"}

// Deserialize reads a certificate from its serialized text and signature,
// keeping both verbatim. It checks the text's structure (a JSON object with
// exactly the fields Serialize writes, salt optional, no duplicates) and
// parses the public key; it verifies nothing: see Check and VerifyChain.
// Errors wrap ErrMalformed.
func Deserialize(serialized, signature string) (*Certificate, error) {
	if len(serialized) > maxSerializedLen {
		return nil, fmt.Errorf("serialized certificate of %d bytes, more than %d: %w", len(serialized), maxSerializedLen, ErrMalformed)
	}
	if !utf8.ValidString(serialized) {
		return nil, fmt.Errorf("serialized certificate: invalid UTF-8: %w", ErrMalformed)
	}
	ms, err := readObject([]byte(serialized))
	if err != nil {
		return nil, fmt.Errorf("serialized certificate: %v: %w", err, ErrMalformed)
	}
	fields := make(map[string]json.RawMessage, len(ms))
	for _, m := range ms {
		if !slices.Contains(serializedFields, m.name) {
			return nil, fmt.Errorf("serialized certificate: unknown field %q: %w", m.name, ErrMalformed)
		}
		fields[m.name] = m.value
	}
	for _, name := range serializedFields {
		if _, ok := fields[name]; !ok && name != "salt" {
			return nil, fmt.Errorf("serialized certificate: no %q: %w", name, ErrMalformed)
		}
	}
	str := func(name string) (string, error) {
		s, err := decodeString(fields[name])
		if err != nil {
			return "", fmt.Errorf("serialized certificate: %q %v: %w", name, err, ErrMalformed)
		}
		return s, nil
	}
	c := &Certificate{Serialized: serialized, Signature: signature}
	if c.ID, err = str("id"); err != nil {
		return nil, err
	}
	if jsonKind(fields["parent_id"]) != "null" {
		if c.ParentID, err = str("parent_id"); err != nil {
			return nil, err
		}
		if c.ParentID == "" {
			return nil, fmt.Errorf("serialized certificate: empty \"parent_id\" (a root has null): %w", ErrMalformed)
		}
	}
	if c.Profile, err = str("profile"); err != nil {
		return nil, err
	}
	if v, ok := fields["salt"]; ok && jsonKind(v) != "null" {
		if c.Salt, err = str("salt"); err != nil {
			return nil, err
		}
	}
	if c.ScopeDefinitionID, err = str("scope_definition_id"); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(fields["scope_version"], &c.ScopeVersion); err != nil || jsonKind(fields["scope_version"]) != "a number" {
		return nil, fmt.Errorf("serialized certificate: \"scope_version\" is not an integer: %w", ErrMalformed)
	}
	if c.ScopeParams, err = str("scope_params"); err != nil {
		return nil, err
	}
	key, err := str("public_key_string")
	if err != nil {
		return nil, err
	}
	if c.PublicKey, err = ParsePublicKey(key); err != nil {
		return nil, fmt.Errorf("serialized certificate: %w", err)
	}
	return c, nil
}

// Params returns the scope parameters. Every value must be a string.
func (c *Certificate) Params() (map[string]string, error) {
	ps, err := parseParams(c.ScopeParams)
	if err != nil {
		return nil, err
	}
	return paramMap(ps), nil
}

// Scope returns the scope c grants, from its scope definition (looked up in
// defs) and its parameters.
func (c *Certificate) Scope(defs Definitions) (Scope, error) {
	def, err := lookup(defs, c.ScopeDefinitionID)
	if err != nil {
		return Scope{}, err
	}
	params, err := c.Params()
	if err != nil {
		return Scope{}, err
	}
	return NewScope(def, params), nil
}

// Sign signs msg with c's private key (see the package function Sign).
func (c *Certificate) Sign(msg []byte) (string, error) {
	if c.PrivateKey == nil {
		return "", fmt.Errorf("certificate %s: %w", c.ID, ErrNoPrivateKey)
	}
	return Sign(c.PrivateKey, msg)
}

// Verify checks that sig is c's signature of msg (see the package function
// Verify).
func (c *Certificate) Verify(msg []byte, sig string) error {
	return Verify(c.PublicKey, msg, sig)
}

// Link returns c as a chain link.
func (c *Certificate) Link() Link {
	return Link{ID: c.ID, Serialized: c.Serialized, Signature: c.Signature}
}

// Chain returns the links of certificates, in the same order (root first for
// a chain).
func Chain(certs []*Certificate) []Link {
	links := make([]Link, len(certs))
	for i, c := range certs {
		links[i] = c.Link()
	}
	return links
}

// Check applies the original's check_certificate rules to c, whose parent is
// parent (nil for a root), in this order:
//
//  1. the id is the one ComputeID gives (ErrIDInvalid);
//  2. a root's signature verifies with its own key, a child's with its
//     parent's (ErrSignatureInvalid, or ErrMalformed for bad base64);
//  3. a root's read and write prefixes all start with its id
//     (ErrRootScopeInvalid); a child's scope is a subset of its parent's
//     (ErrScopeNotSubset);
//  4. a child's profile is its parent's (ErrProfileInvalid).
//
// A parent that is not the one c names is ErrChainBroken. Check does not
// check the parent itself; VerifyChain checks a whole chain.
func (c *Certificate) Check(parent *Certificate, defs Definitions) error {
	if want := c.ComputeID(); c.ID != want {
		return fmt.Errorf("id is %s but should be %s: %w", c.ID, want, ErrIDInvalid)
	}
	if parent == nil {
		if !c.IsRoot() {
			return fmt.Errorf("parent %s not given: %w", c.ParentID, ErrChainBroken)
		}
		if err := Verify(c.PublicKey, []byte(c.Serialized), c.Signature); err != nil {
			return fmt.Errorf("self-signature: %w", err)
		}
		scope, err := c.Scope(defs)
		if err != nil {
			return err
		}
		for _, p := range slices.Concat(scope.Read, scope.Write) {
			if !strings.HasPrefix(p, c.ID) {
				return fmt.Errorf("scope entry %q does not start with the root's id: %w", p, ErrRootScopeInvalid)
			}
		}
		return nil
	}
	if c.ParentID != parent.ID {
		return fmt.Errorf("parent is %s, not %s: %w", orNone(c.ParentID), parent.ID, ErrChainBroken)
	}
	if err := Verify(parent.PublicKey, []byte(c.Serialized), c.Signature); err != nil {
		return fmt.Errorf("signature by parent %s: %w", parent.ID, err)
	}
	scope, err := c.Scope(defs)
	if err != nil {
		return err
	}
	pscope, err := parent.Scope(defs)
	if err != nil {
		return fmt.Errorf("parent %s: %w", parent.ID, err)
	}
	if !scope.IsSubsetOf(pscope) {
		return fmt.Errorf("read %q write %q not within parent %s's read %q write %q: %w",
			[]string(scope.Read), []string(scope.Write), parent.ID, []string(pscope.Read), []string(pscope.Write), ErrScopeNotSubset)
	}
	if c.Profile != parent.Profile {
		return fmt.Errorf("profile is %s but the parent's is %s: %w", c.Profile, parent.Profile, ErrProfileInvalid)
	}
	return nil
}

func orNone(id string) string {
	if id == "" {
		return "none (a root)"
	}
	return id
}

// NewRoot makes a self-signed root certificate with a new key, as the
// original's generate_root_certificate does: the definition must have a
// primary scope parameter key, whose value becomes the root's own id; extra
// holds the other parameters (it must not hold the primary key). The profile
// and scope version are the definition's and the salt is "". The parameters'
// JSON puts the primary key first and the others in sorted order. The root
// is checked before it is returned, so a definition whose filters do not all
// start with the primary parameter is refused (ErrRootScopeInvalid).
func NewRoot(def ScopeDefinition, extra map[string]string) (*Certificate, error) {
	key, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	return newRoot(def, extra, key)
}

func newRoot(def ScopeDefinition, extra map[string]string, key *rsa.PrivateKey) (*Certificate, error) {
	primary := def.PrimaryScopeParamKey
	if primary == "" {
		return nil, fmt.Errorf("new root: scope definition %s has no primary scope parameter key", def.ID)
	}
	if _, ok := extra[primary]; ok {
		return nil, fmt.Errorf("new root: parameter %s is the root's own id and cannot be given", primary)
	}
	c := &Certificate{
		Profile:           def.Profile,
		ScopeDefinitionID: def.ID,
		ScopeVersion:      def.Version,
		PublicKey:         &key.PublicKey,
		PrivateKey:        key,
	}
	c.ID = c.ComputeID()
	params := maps.Clone(extra)
	if params == nil {
		params = make(map[string]string)
	}
	params[primary] = c.ID
	if err := def.CheckParams(params, false); err != nil {
		return nil, fmt.Errorf("new root: %w", err)
	}
	var err error
	if c.ScopeParams, err = ParamsJSON(params, primary); err != nil {
		return nil, fmt.Errorf("new root: %w", err)
	}
	c.Serialized = c.Serialize()
	if c.Signature, err = Sign(key, []byte(c.Serialized)); err != nil {
		return nil, fmt.Errorf("new root: %w", err)
	}
	if err := c.Check(nil, DefinitionList{def}); err != nil {
		return nil, fmt.Errorf("new root for %s: %w", def.ID, err)
	}
	return c, nil
}

// ParamsJSON returns scope parameters as the JSON text certificates carry,
// written as Python's json.dumps writes a dict: the parameter named first
// (if present; usually the definition's primary scope parameter key) comes
// first, then the others in sorted order. Keys and values must be valid
// UTF-8.
func ParamsJSON(params map[string]string, first string) (string, error) {
	ps := make([]param, 0, len(params))
	if v, ok := params[first]; ok {
		ps = append(ps, param{first, v})
	}
	for _, k := range slices.Sorted(maps.Keys(params)) {
		if k != first {
			ps = append(ps, param{k, params[k]})
		}
	}
	for _, p := range ps {
		if !utf8.ValidString(p.key) || !utf8.ValidString(p.value) {
			return "", fmt.Errorf("scope param %q: invalid UTF-8: %w", p.key, ErrMalformed)
		}
	}
	return dumpParams(ps), nil
}
