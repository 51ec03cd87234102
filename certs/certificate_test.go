package certs

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/morango-sync/morango/ids"
)

func TestFixtureCertificates(t *testing.T) {
	f, _ := loadCertificates(t)
	defs := f.defs()
	for _, fc := range f.certs() {
		c, err := Deserialize(fc.Serialized, fc.Signature)
		if err != nil {
			t.Fatalf("%s: %v", fc.ID, err)
		}
		parent := ""
		if fc.ParentID != nil {
			parent = *fc.ParentID
		}
		if c.ID != fc.ID || c.ParentID != parent || c.Profile != fc.Profile || c.ScopeDefinitionID != fc.ScopeDefinitionID ||
			c.ScopeVersion != fc.ScopeVersion || c.ScopeParams != fc.ScopeParams || c.Salt != fc.Salt ||
			c.Serialized != fc.Serialized || c.Signature != fc.Signature || c.PrivateKey != nil {
			t.Errorf("%s: deserialized %+v", fc.ID, c)
		}
		if c.IsRoot() != (fc.ParentID == nil) {
			t.Errorf("%s: IsRoot = %v", fc.ID, c.IsRoot())
		}
		if got := PublicKeyString(c.PublicKey); got != fc.PublicKeyString {
			t.Errorf("%s: public key string %s", fc.ID, got)
		}
		if got := c.Serialize(); got != fc.Serialized {
			t.Errorf("%s: Serialize =\n%s\nwant\n%s", fc.ID, got, fc.Serialized)
		}
		if got := c.ComputeID(); got != fc.ID || got != fc.IDComputation.Result || ids.SHA2UUID(fc.IDComputation.Argument) != got {
			t.Errorf("%s: ComputeID = %s", fc.ID, got)
		}
		s, err := c.Scope(defs)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(s.Read, Filter(fc.Scope.Read)) || !slices.Equal(s.Write, Filter(fc.Scope.Write)) {
			t.Errorf("%s: scope %q / %q, want %q / %q", fc.ID, []string(s.Read), []string(s.Write), fc.Scope.Read, fc.Scope.Write)
		}
		params, err := c.Params()
		if err != nil {
			t.Fatal(err)
		}
		def, _ := defs.ScopeDefinition(c.ScopeDefinitionID)
		if got := def.Describe(params); got != fc.Description {
			t.Errorf("%s: description %q, want %q", fc.ID, got, fc.Description)
		}
		if l := c.Link(); l != fc.link() {
			t.Errorf("%s: Link = %+v", fc.ID, l)
		}
	}
}

func TestCertificateIDFixture(t *testing.T) {
	var fx struct {
		CertificateID struct {
			Examples []struct {
				Argument string `json:"sha2_uuid_argument"`
				Result   string `json:"result"`
			} `json:"examples"`
		} `json:"certificate_id"`
	}
	readFixture(t, "uuids.json", &fx)
	if len(fx.CertificateID.Examples) == 0 {
		t.Fatal("no certificate_id examples")
	}
	for _, ex := range fx.CertificateID.Examples {
		parts := strings.Split(ex.Argument, ":")
		pub, err := ParsePublicKey(parts[0])
		if err != nil {
			t.Fatal(err)
		}
		c := &Certificate{PublicKey: pub, Profile: parts[1]}
		if len(parts) > 2 {
			c.Salt = parts[2]
		}
		if got := c.ComputeID(); got != ex.Result {
			t.Errorf("ComputeID(%.20s…) = %s, want %s", ex.Argument, got, ex.Result)
		}
	}
}

func TestScopeSubsetFixture(t *testing.T) {
	f, _ := loadCertificates(t)
	scopes := map[string]Scope{}
	for name, fc := range map[string]*fixtureCert{"root": &f.Root, "child": &f.Child, "grandchild": &f.Grandchild} {
		c, err := Deserialize(fc.Serialized, fc.Signature)
		if err != nil {
			t.Fatal(err)
		}
		if scopes[name], err = c.Scope(f.defs()); err != nil {
			t.Fatal(err)
		}
	}
	for rel, want := range f.ScopeSubsetChecks {
		a, b, _ := strings.Cut(rel, "<=")
		if got := scopes[a].IsSubsetOf(scopes[b]); got != want {
			t.Errorf("%s: %v, want %v", rel, got, want)
		}
	}
}

// The expected text was computed with Python 3.11's json.dumps.
func TestSerializeEscapesLikePython(t *testing.T) {
	f, _ := loadCertificates(t)
	pub, _ := ParsePublicKey(f.Root.PublicKeyString)
	c := &Certificate{
		ID: strings.Repeat("0", 32), ParentID: strings.Repeat("1", 32), Profile: "prof\u00e9\U0001d11e", Salt: `s"\`,
		ScopeDefinitionID: "d\n", ScopeVersion: -3, PublicKey: pub,
	}
	var err error
	if c.ScopeParams, err = ParamsJSON(map[string]string{"k\u00e9": "v\u2028"}, ""); err != nil {
		t.Fatal(err)
	}
	if want := `{"k\u00e9": "v\u2028"}`; c.ScopeParams != want {
		t.Errorf("ParamsJSON = %s, want %s", c.ScopeParams, want)
	}
	want := `{"id": "00000000000000000000000000000000", "parent_id": "11111111111111111111111111111111", "profile": "prof\u00e9\ud834\udd1e", "salt": "s\"\\", "scope_definition_id": "d\n", "scope_version": -3, "scope_params": "{\"k\\u00e9\": \"v\\u2028\"}", "public_key_string": "` +
		f.Root.PublicKeyString + `"}`
	if got := c.Serialize(); got != want {
		t.Errorf("Serialize =\n%s\nwant\n%s", got, want)
	}
	if got := pyString("\x00\x7f\t\b\f\r/"); got != `"\u0000\u007f\t\b\f\r/"` {
		t.Errorf("pyString = %s", got)
	}
	// And it reads back.
	d, err := Deserialize(c.Serialize(), "")
	if err != nil {
		t.Fatal(err)
	}
	if d.Profile != c.Profile || d.Salt != c.Salt || d.ScopeDefinitionID != c.ScopeDefinitionID || d.ScopeParams != c.ScopeParams || d.ScopeVersion != -3 {
		t.Errorf("read back %+v", d)
	}
}

func TestParamsJSONOrder(t *testing.T) {
	p := map[string]string{"user_id": "U", "dataset_id": "D", "b": "2", "a": "1"}
	for first, want := range map[string]string{
		"":           `{"a": "1", "b": "2", "dataset_id": "D", "user_id": "U"}`,
		"user_id":    `{"user_id": "U", "a": "1", "b": "2", "dataset_id": "D"}`,
		"missing":    `{"a": "1", "b": "2", "dataset_id": "D", "user_id": "U"}`,
		"dataset_id": `{"dataset_id": "D", "a": "1", "b": "2", "user_id": "U"}`,
	} {
		if got, err := ParamsJSON(p, first); err != nil || got != want {
			t.Errorf("ParamsJSON(first %q) = %s, %v; want %s", first, got, err, want)
		}
	}
	if got, _ := ParamsJSON(nil, "x"); got != "{}" {
		t.Errorf("empty params: %s", got)
	}
	if _, err := ParamsJSON(map[string]string{"k": "\xff"}, ""); !errors.Is(err, ErrMalformed) {
		t.Errorf("invalid UTF-8: err = %v", err)
	}
}

func TestParams(t *testing.T) {
	ok := map[string]map[string]string{
		`{}`:                         {},
		`{"a": "1", "b": "x y"}`:     {"a": "1", "b": "x y"},
		`{"a":"\u00e9"}`:             {"a": "é"},
		` { "a" : "" } `:             {"a": ""},
		`{"dataset_id": "D", "":""}`: {"dataset_id": "D", "": ""},
	}
	for in, want := range ok {
		c := &Certificate{ScopeParams: in}
		got, err := c.Params()
		if err != nil || !equalMaps(got, want) {
			t.Errorf("Params(%s) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{``, `null`, `[]`, `"a"`, `{"a": 1}`, `{"a": true}`, `{"a": null}`, `{"a": ["x"]}`,
		`{"a": {"b": "c"}}`, `{"a": "1", "a": "2"}`, `{"a": "1"} x`, `{"a": "1"`, "{\"a\": \"\xff\"}"} {
		c := &Certificate{ScopeParams: in}
		if _, err := c.Params(); !errors.Is(err, ErrMalformed) {
			t.Errorf("Params(%q): err = %v, want ErrMalformed", in, err)
		}
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestDeserializeMalformed(t *testing.T) {
	f, _ := loadCertificates(t)
	good := f.Grandchild.Serialized
	replace := func(old, new string) string {
		t.Helper()
		if !strings.Contains(good, old) {
			t.Fatalf("%q not in the fixture", old)
		}
		return strings.Replace(good, old, new, 1)
	}
	bad := map[string]string{
		"empty":                "",
		"not an object":        "[]",
		"trailing data":        good + " {}",
		"unknown field":        replace(`{"id"`, `{"extra": 1, "id"`),
		"upper-case field":     replace(`"id"`, `"ID"`),
		"duplicate field":      replace(`{"id"`, `{"profile": "facilitydata", "id"`),
		"missing id":           replace(`"id": "454417b94f086a402c47ff06426c03ec", `, ``),
		"missing parent_id":    replace(`"parent_id": "97456c65360ea118a261de75eb5f7c7f", `, ``),
		"empty parent_id":      replace(`"parent_id": "97456c65360ea118a261de75eb5f7c7f"`, `"parent_id": ""`),
		"numeric parent_id":    replace(`"parent_id": "97456c65360ea118a261de75eb5f7c7f"`, `"parent_id": 5`),
		"null id":              replace(`"id": "454417b94f086a402c47ff06426c03ec"`, `"id": null`),
		"string scope_version": replace(`"scope_version": 1`, `"scope_version": "1"`),
		"float scope_version":  replace(`"scope_version": 1`, `"scope_version": 1.5`),
		"null scope_version":   replace(`"scope_version": 1`, `"scope_version": null`),
		"object scope_params":  replace(`"scope_params": `+pyString(f.Grandchild.ScopeParams), `"scope_params": {"a": "b"}`),
		"bad public key":       replace(`"public_key_string": "MIIBCgKCAQEA`, `"public_key_string": "MIIB`),
		"numeric salt":         replace(`"salt": ""`, `"salt": 0`),
		"invalid UTF-8":        replace(`"profile": "facilitydata"`, "\"profile\": \"facility\xffdata\""),
		"too long":             good + strings.Repeat(" ", maxSerializedLen),
	}
	for name, s := range bad {
		if _, err := Deserialize(s, "sig"); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
	// The original reads a missing or null salt as "".
	for _, s := range []string{replace(`"salt": "", `, ``), replace(`"salt": ""`, `"salt": null`)} {
		c, err := Deserialize(s, "sig")
		if err != nil || c.Salt != "" {
			t.Errorf("salt left out: %v, %+v", err, c)
		}
	}
}

func TestNewRootReproducesFixture(t *testing.T) {
	f, keys := loadCertificates(t)
	root, err := newRoot(f.def(t, "full-facility"), nil, keys[f.Root.ID])
	if err != nil {
		t.Fatal(err)
	}
	// PKCS#1 v1.5 is deterministic and the id depends only on the key and
	// profile, so the root is the original's byte for byte.
	if root.ID != f.Root.ID || root.Serialized != f.Root.Serialized || root.Signature != f.Root.Signature ||
		root.ScopeParams != f.Root.ScopeParams || root.Salt != "" || !root.IsRoot() || root.PrivateKey == nil {
		t.Errorf("newRoot = %+v, want the fixture's root", root)
	}
	if _, err := VerifyChain([]Link{root.Link()}, f.defs()); err != nil {
		t.Error(err)
	}
}

func TestNewRootParams(t *testing.T) {
	f, keys := loadCertificates(t)
	full := f.def(t, "full-facility")
	key := keys[f.Root.ID]
	root, err := newRoot(full, map[string]string{"z": "last", "a": "first"}, key)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"dataset_id": "` + root.ID + `", "a": "first", "z": "last"}`; root.ScopeParams != want {
		t.Errorf("params %s, want %s", root.ScopeParams, want)
	}
	if _, err := newRoot(full, map[string]string{"dataset_id": "x"}, key); err == nil {
		t.Error("a root with its primary parameter given was made")
	}
	if _, err := newRoot(f.def(t, "single-user"), nil, key); err == nil {
		t.Error("a root of a definition without a primary key was made")
	}
	outside := full
	outside.ReadFilterTemplate = "shared"
	if _, err := newRoot(outside, nil, key); !errors.Is(err, ErrRootScopeInvalid) {
		t.Errorf("root reading outside its namespace: err = %v, want ErrRootScopeInvalid", err)
	}
}

// TestNewRoot makes one key: the slow path, checked once.
func TestNewRoot(t *testing.T) {
	f, _ := loadCertificates(t)
	root, err := NewRoot(f.def(t, "full-facility"), nil)
	if err != nil {
		t.Fatal(err)
	}
	k := root.PrivateKey
	if k == nil || k.N.BitLen() != KeyBits || k.E != 65537 || !k.PublicKey.Equal(root.PublicKey) {
		t.Fatalf("root key: %+v", k)
	}
	if !strings.HasPrefix(PublicKeyString(root.PublicKey), "MIIBCgKCAQEA") || !ids.Valid(root.ID) || root.ID != root.ComputeID() {
		t.Errorf("root id %s, key %.20s…", root.ID, PublicKeyString(root.PublicKey))
	}
	if root.Serialized != root.Serialize() || !strings.HasPrefix(root.Serialized, `{"id": "`+root.ID+`", "parent_id": null, "profile": "facilitydata", "salt": "", "scope_definition_id": "full-facility", "scope_version": 1, "scope_params": "{\"dataset_id\": \"`+root.ID+`\"}", "public_key_string": "MIIBCgKCAQEA`) {
		t.Errorf("serialized: %s", root.Serialized)
	}
	verified, err := VerifyChain(Chain([]*Certificate{root}), f.defs())
	if err != nil {
		t.Fatal(err)
	}
	s, _ := verified[0].Scope(f.defs())
	if !slices.Equal(s.Read, Filter{root.ID}) || !slices.Equal(s.Write, Filter{root.ID}) {
		t.Errorf("scope %q / %q", []string(s.Read), []string(s.Write))
	}
}

func TestCheckNeedsTheNamedParent(t *testing.T) {
	f, _ := loadCertificates(t)
	root, _ := Deserialize(f.Root.Serialized, f.Root.Signature)
	child, _ := Deserialize(f.Child.Serialized, f.Child.Signature)
	grandchild, _ := Deserialize(f.Grandchild.Serialized, f.Grandchild.Signature)
	if err := child.Check(root, f.defs()); err != nil {
		t.Error(err)
	}
	if err := grandchild.Check(child, f.defs()); err != nil {
		t.Error(err)
	}
	for name, err := range map[string]error{
		"child without parent":      child.Check(nil, f.defs()),
		"grandchild under the root": grandchild.Check(root, f.defs()),
		"root under a parent":       root.Check(child, f.defs()),
	} {
		if !errors.Is(err, ErrChainBroken) {
			t.Errorf("%s: err = %v, want ErrChainBroken", name, err)
		}
	}
	if err := root.Check(nil, DefinitionList{}); !errors.Is(err, ErrUnknownScopeDefinition) {
		t.Errorf("no definitions: err = %v", err)
	}
	if err := root.Check(nil, nil); !errors.Is(err, ErrUnknownScopeDefinition) {
		t.Errorf("nil definitions: err = %v", err)
	}
}
