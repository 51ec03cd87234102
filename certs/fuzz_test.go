package certs

import (
	"encoding/json"
	"slices"
	"testing"
)

// FuzzParseChain checks that parsing and verifying any chain file never
// panics, and that a parsed chain written back parses to the same links.
// Run it with: go test -fuzz FuzzParseChain ./certs/
func FuzzParseChain(f *testing.F) {
	fx, _ := loadCertificates(f)
	var errs errorsFixture
	readFixture(f, "certificate_errors.json", &errs)
	for _, c := range errs.Cases {
		data, err := json.Marshal(c.Chain)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(fx.WireChain))
	f.Add([]byte(`[]`))
	f.Add([]byte(`[{"id": "", "serialized": "{}", "signature": ""}]`))
	defs := fx.defs()
	f.Fuzz(func(t *testing.T, data []byte) {
		links, err := ParseChain(data)
		if err != nil {
			return
		}
		if len(links) == 0 || len(links) > MaxChainLength {
			t.Fatalf("parsed %d links", len(links))
		}
		again, err := json.Marshal(links)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseChain(again)
		if err != nil || !slices.Equal(back, links) {
			t.Fatalf("written back: %v", err)
		}
		verified, err := VerifyChain(links, defs)
		if err == nil {
			if len(verified) != len(links) || !verified[0].IsRoot() {
				t.Fatalf("verified %d of %d links", len(verified), len(links))
			}
			for _, v := range verified {
				if _, err := v.Scope(defs); err != nil {
					t.Fatalf("verified certificate without a scope: %v", err)
				}
			}
		}
		for _, l := range links {
			if c, err := Deserialize(l.Serialized, l.Signature); err == nil {
				c.Serialize()
				_, _ = c.Params()
			}
		}
	})
}

// FuzzParseRequest checks that parsing any request file never panics and
// that a parsed request written back parses to the same request.
// Run it with: go test -fuzz FuzzParseRequest ./certs/
func FuzzParseRequest(f *testing.F) {
	fx, _ := loadCertificates(f)
	for _, c := range fx.certs() {
		req := Request{
			Profile:           c.Profile,
			ScopeDefinitionID: c.ScopeDefinitionID,
			ScopeVersion:      c.ScopeVersion,
			ScopeParams:       c.ScopeParams,
			PublicKey:         c.PublicKeyString,
		}
		if c.ParentID != nil {
			req.ParentID = *c.ParentID
		}
		data, err := json.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"profile": "p", "scope_definition": "s", "scope_version": 1, "scope_params": "{}", "public_key": "x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := ParseRequest(data)
		if err != nil {
			return
		}
		again, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseRequest(again)
		if err != nil || *back != *req {
			t.Fatalf("written back: %v", err)
		}
	})
}
