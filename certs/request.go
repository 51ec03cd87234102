package certs

import (
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/morango-sync/morango/ids"
)

// Bounds on request files.
const (
	maxRequestBytes = 64 << 10
	maxNameLen      = 64
	maxParamsLen    = 8 << 10
)

// Request asks a device that holds a parent certificate for a certificate,
// offline: the requesting device keeps the private key, the request travels
// as a JSON file, and the granted chain travels back (see Grant). Its JSON
// names follow the original's certificate signing request.
type Request struct {
	// ParentID optionally names the parent certificate the request is meant
	// for; Grant refuses another parent.
	ParentID          string `json:"parent,omitempty"`
	Profile           string `json:"profile"`
	ScopeDefinitionID string `json:"scope_definition"`
	ScopeVersion      int    `json:"scope_version"`
	// ScopeParams is the parameters' JSON, as the certificate will carry it
	// (see ParamsJSON).
	ScopeParams string `json:"scope_params"`
	// PublicKey is the requester's public key string (see PublicKeyString).
	PublicKey string `json:"public_key"`
}

// NewRequest makes a key and a request for a certificate of the scope
// definition with the given parameters, for the named profile. The
// parameters' JSON puts the definition's primary scope parameter key first
// (if given), then the others in sorted order. The caller keeps the private
// key until the granted chain comes back.
func NewRequest(def ScopeDefinition, params map[string]string, profile string) (*Request, *rsa.PrivateKey, error) {
	key, err := GenerateKey()
	if err != nil {
		return nil, nil, err
	}
	req, err := newRequest(def, params, profile, key)
	if err != nil {
		return nil, nil, err
	}
	return req, key, nil
}

func newRequest(def ScopeDefinition, params map[string]string, profile string, key *rsa.PrivateKey) (*Request, error) {
	if profile == "" {
		return nil, fmt.Errorf("new request: no profile")
	}
	if def.Profile != "" && def.Profile != profile {
		return nil, fmt.Errorf("new request: scope definition %s belongs to profile %s, not %s", def.ID, def.Profile, profile)
	}
	if err := def.CheckParams(params, true); err != nil {
		return nil, fmt.Errorf("new request: %w", err)
	}
	pj, err := ParamsJSON(params, def.PrimaryScopeParamKey)
	if err != nil {
		return nil, fmt.Errorf("new request: %w", err)
	}
	return &Request{
		Profile:           profile,
		ScopeDefinitionID: def.ID,
		ScopeVersion:      def.Version,
		ScopeParams:       pj,
		PublicKey:         PublicKeyString(&key.PublicKey),
	}, nil
}

// requestFields are the members of a request file; only "parent" may be
// missing.
var requestFields = []string{"parent", "profile", "scope_definition", "scope_version", "scope_params", "public_key"}

// ParseRequest reads a request file, which comes from another device and is
// not trusted. It refuses files over 64 KiB, anything but one JSON object
// with exactly the members of Request ("parent" optional), duplicate
// members, empty or oversized names, a parent that is not an id, scope
// parameters that are not an object of strings written as ParamsJSON writes
// them, and a public key that does not parse. The public key is returned in
// its one-line form. Errors wrap ErrMalformed.
func ParseRequest(data []byte) (*Request, error) {
	if len(data) > maxRequestBytes {
		return nil, fmt.Errorf("request of %d bytes, more than %d: %w", len(data), maxRequestBytes, ErrMalformed)
	}
	ms, err := readObject(data)
	if err != nil {
		return nil, fmt.Errorf("request: %v: %w", err, ErrMalformed)
	}
	fields := make(map[string]json.RawMessage, len(ms))
	for _, m := range ms {
		if !slices.Contains(requestFields, m.name) {
			return nil, fmt.Errorf("request: unknown field %q: %w", m.name, ErrMalformed)
		}
		fields[m.name] = m.value
	}
	for _, f := range requestFields[1:] {
		if _, ok := fields[f]; !ok {
			return nil, fmt.Errorf("request: no %q: %w", f, ErrMalformed)
		}
	}
	str := func(name string, limit int) (string, error) {
		s, err := decodeString(fields[name])
		if err != nil {
			return "", fmt.Errorf("request: %q %v: %w", name, err, ErrMalformed)
		}
		if s == "" || len(s) > limit {
			return "", fmt.Errorf("request: %q is empty or longer than %d bytes: %w", name, limit, ErrMalformed)
		}
		return s, nil
	}
	req := &Request{}
	if _, ok := fields["parent"]; ok {
		if req.ParentID, err = str("parent", maxNameLen); err != nil {
			return nil, err
		}
		if !ids.Valid(req.ParentID) {
			return nil, fmt.Errorf("request: parent %q is not an id: %w", req.ParentID, ErrMalformed)
		}
	}
	if req.Profile, err = str("profile", maxNameLen); err != nil {
		return nil, err
	}
	if req.ScopeDefinitionID, err = str("scope_definition", maxNameLen); err != nil {
		return nil, err
	}
	if v := fields["scope_version"]; jsonKind(v) != "a number" || json.Unmarshal(v, &req.ScopeVersion) != nil {
		return nil, fmt.Errorf("request: \"scope_version\" is not an integer: %w", ErrMalformed)
	}
	if req.ScopeParams, err = str("scope_params", maxParamsLen); err != nil {
		return nil, err
	}
	ps, err := parseParams(req.ScopeParams)
	if err != nil {
		return nil, fmt.Errorf("request: %w", err)
	}
	if canon := dumpParams(ps); canon != req.ScopeParams {
		return nil, fmt.Errorf("request: scope params not written as %s: %w", canon, ErrMalformed)
	}
	pk, err := str("public_key", maxKeyText)
	if err != nil {
		return nil, err
	}
	pub, err := ParsePublicKey(pk)
	if err != nil {
		return nil, fmt.Errorf("request: %w", err)
	}
	req.PublicKey = PublicKeyString(pub)
	return req, nil
}

// Grant makes the certificate req asks for, signed by c, which must carry
// its private key (ErrNoPrivateKey otherwise). The child gets c's profile
// (a request for another profile is ErrProfileInvalid), the requested scope
// definition, version and parameters (verbatim), the requested public key
// and a random salt. A requested scope that is not a subset of c's is
// ErrScopeNotSubset; an unknown scope definition is
// ErrUnknownScopeDefinition. Grant does not check c's own chain.
func (c *Certificate) Grant(req *Request, defs Definitions) (*Certificate, error) {
	if c.PrivateKey == nil {
		return nil, fmt.Errorf("grant with certificate %s: %w", c.ID, ErrNoPrivateKey)
	}
	if c.PublicKey == nil || !c.PrivateKey.PublicKey.Equal(c.PublicKey) {
		return nil, fmt.Errorf("grant with certificate %s: its private key does not match its public key", c.ID)
	}
	if req.ParentID != "" && req.ParentID != c.ID {
		return nil, fmt.Errorf("grant with certificate %s: the request is for parent %s", c.ID, req.ParentID)
	}
	if req.Profile != c.Profile {
		return nil, fmt.Errorf("grant with certificate %s: request for profile %s, the parent's is %s: %w",
			c.ID, req.Profile, c.Profile, ErrProfileInvalid)
	}
	pub, err := ParsePublicKey(req.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("grant: request: %w", err)
	}
	ps, err := parseParams(req.ScopeParams)
	if err != nil {
		return nil, fmt.Errorf("grant: request: %w", err)
	}
	def, err := lookup(defs, req.ScopeDefinitionID)
	if err != nil {
		return nil, fmt.Errorf("grant: %w", err)
	}
	pscope, err := c.Scope(defs)
	if err != nil {
		return nil, fmt.Errorf("grant with certificate %s: %w", c.ID, err)
	}
	if err := def.CheckParams(paramMap(ps), false); err != nil {
		return nil, fmt.Errorf("grant: request: %w", err)
	}
	scope := NewScope(def, paramMap(ps))
	if !scope.IsSubsetOf(pscope) {
		return nil, fmt.Errorf("grant with certificate %s: requested read %q write %q not within read %q write %q: %w",
			c.ID, []string(scope.Read), []string(scope.Write), []string(pscope.Read), []string(pscope.Write), ErrScopeNotSubset)
	}
	child := &Certificate{
		ParentID:          c.ID,
		Profile:           c.Profile,
		ScopeDefinitionID: req.ScopeDefinitionID,
		ScopeVersion:      req.ScopeVersion,
		ScopeParams:       req.ScopeParams,
		Salt:              ids.Random(),
		PublicKey:         pub,
	}
	child.ID = child.ComputeID()
	child.Serialized = child.Serialize()
	if child.Signature, err = c.Sign([]byte(child.Serialized)); err != nil {
		return nil, fmt.Errorf("grant: %w", err)
	}
	if err := child.Check(c, defs); err != nil {
		return nil, fmt.Errorf("grant: certificate %s: %w", child.ID, err)
	}
	return child, nil
}
