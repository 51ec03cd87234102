package certs

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/morango-sync/morango/ids"
)

// fixtureUser is the user id of the fixture's single-user certificate.
const fixtureUser = "1b8e5843a583944459e0bcf6a2fe43e2"

// roundTrip carries a request as a file does.
func roundTrip(t *testing.T, req *Request) *Request {
	t.Helper()
	data, err := json.MarshalIndent(req, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseRequest(append(data, '\n'))
	if err != nil {
		t.Fatalf("ParseRequest(%s): %v", data, err)
	}
	if *got != *req {
		t.Fatalf("ParseRequest = %+v, want %+v", got, req)
	}
	return got
}

func checkGranted(t *testing.T, child, parent *Certificate) {
	t.Helper()
	if child.ParentID != parent.ID || child.Profile != parent.Profile || !ids.Valid(child.Salt) || child.PrivateKey != nil {
		t.Errorf("granted %+v", child)
	}
	if child.ID != child.ComputeID() || !ids.Valid(child.ID) {
		t.Errorf("granted id %s, want %s", child.ID, child.ComputeID())
	}
	want := `{"id": "` + child.ID + `", "parent_id": "` + parent.ID + `", "profile": "` + parent.Profile + `", "salt": "` + child.Salt + `", `
	if child.Serialized != child.Serialize() || !strings.HasPrefix(child.Serialized, want) {
		t.Errorf("serialized %s", child.Serialized)
	}
	if err := parent.Verify([]byte(child.Serialized), child.Signature); err != nil {
		t.Errorf("granted signature: %v", err)
	}
}

func TestRequestGrantVerify(t *testing.T) {
	f, keys := loadCertificates(t)
	defs := f.defs()
	root, err := newRoot(f.def(t, "full-facility"), nil, keys[f.Root.ID])
	if err != nil {
		t.Fatal(err)
	}

	// A facility certificate under the root, then a single-user one under
	// that: the fixture's shape, with fresh salts.
	midReq, err := newRequest(f.def(t, "full-facility"), map[string]string{"dataset_id": root.ID}, "facilitydata", keys[f.Child.ID])
	if err != nil {
		t.Fatal(err)
	}
	if midReq.ScopeParams != f.Child.ScopeParams || midReq.PublicKey != f.Child.PublicKeyString || midReq.ScopeVersion != 1 {
		t.Errorf("request %+v", midReq)
	}
	mid, err := root.Grant(roundTrip(t, midReq), defs)
	if err != nil {
		t.Fatal(err)
	}
	checkGranted(t, mid, root)
	mid.PrivateKey = keys[f.Child.ID]

	leafReq, err := newRequest(f.def(t, "single-user"), map[string]string{"user_id": fixtureUser, "dataset_id": root.ID},
		"facilitydata", keys[f.Grandchild.ID])
	if err != nil {
		t.Fatal(err)
	}
	leafReq.ParentID = mid.ID
	if leafReq.ScopeParams != f.Grandchild.ScopeParams {
		t.Errorf("params %s, want %s", leafReq.ScopeParams, f.Grandchild.ScopeParams)
	}
	leaf, err := mid.Grant(roundTrip(t, leafReq), defs)
	if err != nil {
		t.Fatal(err)
	}
	checkGranted(t, leaf, mid)

	// The chain travels as a file and verifies.
	data, err := json.Marshal(Chain([]*Certificate{root, mid, leaf}))
	if err != nil {
		t.Fatal(err)
	}
	links, err := ParseChain(data)
	if err != nil {
		t.Fatal(err)
	}
	verified, err := VerifyChain(links, defs, ExpectLastID(leaf.ID))
	if err != nil {
		t.Fatal(err)
	}
	s, err := verified[2].Scope(defs)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Read, Filter(f.Grandchild.Scope.Read)) || !slices.Equal(s.Write, Filter(f.Grandchild.Scope.Write)) {
		t.Errorf("leaf scope %q / %q", []string(s.Read), []string(s.Write))
	}

	// Granting twice gives two certificates (random salts).
	again, err := mid.Grant(leafReq, defs)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID == leaf.ID || again.Salt == leaf.Salt {
		t.Error("two grants gave the same certificate")
	}
}

func TestGrantRefusals(t *testing.T) {
	f, keys := loadCertificates(t)
	defs := f.defs()
	root, err := newRoot(f.def(t, "full-facility"), nil, keys[f.Root.ID])
	if err != nil {
		t.Fatal(err)
	}
	single := f.def(t, "single-user")
	base, err := newRequest(single, map[string]string{"dataset_id": root.ID, "user_id": "U"}, "facilitydata", keys[f.Grandchild.ID])
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := root.Grant(base, defs)
	if err != nil {
		t.Fatal(err)
	}
	leaf.PrivateKey = keys[f.Grandchild.ID]
	noKey, err := Deserialize(root.Serialized, root.Signature)
	if err != nil {
		t.Fatal(err)
	}
	wrongKey := *root
	wrongKey.PrivateKey = keys[f.Child.ID]

	with := func(edit func(r *Request)) *Request {
		r := *base
		edit(&r)
		return &r
	}
	otherDataset, _ := ParamsJSON(map[string]string{"dataset_id": strings.Repeat("e", 32), "user_id": "U"}, "")
	fullParams, _ := ParamsJSON(map[string]string{"dataset_id": root.ID}, "dataset_id")
	cases := []struct {
		name   string
		parent *Certificate
		req    *Request
		want   error
	}{
		{"parent without private key", noKey, base, ErrNoPrivateKey},
		{"another dataset", root, with(func(r *Request) { r.ScopeParams = otherDataset }), ErrScopeNotSubset},
		{"wider than a single-user parent", leaf, with(func(r *Request) { r.ScopeDefinitionID, r.ScopeParams = "full-facility", fullParams }), ErrScopeNotSubset},
		{"same scope as a single-user parent", leaf, base, nil},
		{"another profile", root, with(func(r *Request) { r.Profile = "otherprofile" }), ErrProfileInvalid},
		{"unknown definition", root, with(func(r *Request) { r.ScopeDefinitionID = "nobody" }), ErrUnknownScopeDefinition},
		{"bad public key", root, with(func(r *Request) { r.PublicKey = "MIIB" }), ErrMalformed},
		{"bad params", root, with(func(r *Request) { r.ScopeParams = `{"dataset_id": 1}` }), ErrMalformed},
		{"parent hint matches", root, with(func(r *Request) { r.ParentID = root.ID }), nil},
	}
	for _, c := range cases {
		child, err := c.parent.Grant(c.req, defs)
		expectKind(t, c.name, err, c.want)
		if err != nil && child != nil {
			t.Errorf("%s: a certificate came with the error", c.name)
		}
	}
	for name, err := range map[string]error{
		"parent hint differs":  func() error { _, err := root.Grant(with(func(r *Request) { r.ParentID = leaf.ID }), defs); return err }(),
		"private key mismatch": func() error { _, err := wrongKey.Grant(base, defs); return err }(),
	} {
		if err == nil {
			t.Errorf("%s: granted", name)
		}
	}
}

func TestNewRequestRefusals(t *testing.T) {
	f, keys := loadCertificates(t)
	single := f.def(t, "single-user")
	key := keys[f.Grandchild.ID]
	p := map[string]string{"dataset_id": "D", "user_id": "U"}
	if _, err := newRequest(single, p, "", key); err == nil {
		t.Error("request without a profile")
	}
	if _, err := newRequest(single, p, "otherprofile", key); err == nil {
		t.Error("request for a definition of another profile")
	}
	if _, err := newRequest(single, map[string]string{"dataset_id": "\xff", "user_id": "U"}, "facilitydata", key); !errors.Is(err, ErrMalformed) {
		t.Errorf("invalid UTF-8 parameter: err = %v", err)
	}
	// A parameter the scope's filters use, missing, empty or misspelt,
	// would leave "${user_id}" in the certificate's filters, which match
	// nothing the app writes.
	for name, p := range map[string]map[string]string{
		"missing":  {"dataset_id": "D"},
		"empty":    {"dataset_id": "D", "user_id": ""},
		"misspelt": {"dataset_id": "D", "userid": "U"},
		"unused":   {"dataset_id": "D", "user_id": "U", "role": "coach"},
	} {
		_, err := newRequest(single, p, "facilitydata", key)
		if err == nil || !strings.Contains(err.Error(), "takes the parameters dataset_id, user_id") {
			t.Errorf("%s parameter: err = %v", name, err)
		}
	}
}

// Grant refuses a request whose parameters leave a filter template
// unfilled, as a request from another implementation may.
func TestGrantRefusesMissingParams(t *testing.T) {
	f, keys := loadCertificates(t)
	root, err := newRoot(f.def(t, "full-facility"), nil, keys[f.Root.ID])
	if err != nil {
		t.Fatal(err)
	}
	req, err := newRequest(f.def(t, "single-user"), map[string]string{"dataset_id": root.ID, "user_id": fixtureUser}, "facilitydata", keys[f.Grandchild.ID])
	if err != nil {
		t.Fatal(err)
	}
	req.ScopeParams = `{"dataset_id": "` + root.ID + `"}`
	if _, err := root.Grant(req, f.defs()); err == nil || !strings.Contains(err.Error(), "it needs user_id") {
		t.Errorf("grant of a request without user_id: err = %v", err)
	}
}

func TestParseRequest(t *testing.T) {
	f, keys := loadCertificates(t)
	req, err := newRequest(f.def(t, "single-user"), map[string]string{"dataset_id": f.Root.ID, "user_id": fixtureUser}, "facilitydata", keys[f.Grandchild.ID])
	if err != nil {
		t.Fatal(err)
	}
	req.ParentID = f.Child.ID
	roundTrip(t, req)
	data, _ := json.Marshal(req)
	good := string(data)

	// Any key form the original accepts; the request keeps the one-line form.
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&keys[f.Grandchild.ID].PublicKey)}))
	pemReq := *req
	pemReq.PublicKey = pemKey
	data, _ = json.Marshal(&pemReq)
	if got, err := ParseRequest(data); err != nil || got.PublicKey != f.Grandchild.PublicKeyString {
		t.Errorf("PEM key: %v, %+v", err, got)
	}
	// The parent is optional.
	noParent := *req
	noParent.ParentID = ""
	roundTrip(t, &noParent)

	replace := func(old, new string) string {
		t.Helper()
		if !strings.Contains(good, old) {
			t.Fatalf("%q not in %s", old, good)
		}
		return strings.Replace(good, old, new, 1)
	}
	params, _ := json.Marshal(req.ScopeParams)
	bad := map[string]string{
		"empty":                "",
		"list":                 "[" + good + "]",
		"trailing data":        good + "{}",
		"unknown field":        replace(`{"parent"`, `{"extra": "x", "parent"`),
		"upper-case field":     replace(`"profile"`, `"Profile"`),
		"duplicate field":      replace(`{"parent"`, `{"profile": "facilitydata", "parent"`),
		"missing profile":      replace(`"profile":"facilitydata",`, ``),
		"empty profile":        replace(`"profile":"facilitydata"`, `"profile":""`),
		"long profile":         replace(`"profile":"facilitydata"`, `"profile":"`+strings.Repeat("p", maxNameLen+1)+`"`),
		"null definition":      replace(`"scope_definition":"single-user"`, `"scope_definition":null`),
		"string version":       replace(`"scope_version":1`, `"scope_version":"1"`),
		"float version":        replace(`"scope_version":1`, `"scope_version":1.5`),
		"params not a string":  replace(`"scope_params":`+string(params), `"scope_params":{"dataset_id":"D"}`),
		"params not canonical": replace(`"scope_params":`+string(params), `"scope_params":"{\"dataset_id\":\"D\"}"`),
		"params number":        replace(`"scope_params":`+string(params), `"scope_params":"{\"dataset_id\": 1}"`),
		"params duplicate":     replace(`"scope_params":`+string(params), `"scope_params":"{\"a\": \"1\", \"a\": \"1\"}"`),
		"bad key":              replace(`"public_key":"MIIBCgKCAQEA`, `"public_key":"MIIB`),
		"parent not an id":     replace(`"parent":"`+f.Child.ID, `"parent":"`+strings.ToUpper(f.Child.ID)),
		"empty parent":         replace(`"parent":"`+f.Child.ID+`"`, `"parent":""`),
		"too big":              good + strings.Repeat(" ", maxRequestBytes),
	}
	for name, s := range bad {
		if _, err := ParseRequest([]byte(s)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}
