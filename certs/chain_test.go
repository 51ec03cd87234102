package certs

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

// kinds are all the error kinds; a failure must match exactly one.
var kinds = []error{ErrIDInvalid, ErrSignatureInvalid, ErrRootScopeInvalid, ErrScopeNotSubset, ErrProfileInvalid,
	ErrChainBroken, ErrUnknownScopeDefinition, ErrMalformed, ErrNoPrivateKey}

// originalErrors maps what the original raised (class, or class and message
// for its assertions in save_certificate_chain) to our error kinds.
var originalErrors = map[string]error{
	"CertificateIDInvalid":                                                ErrIDInvalid,
	"CertificateSignatureInvalid":                                         ErrSignatureInvalid,
	"CertificateRootScopeInvalid":                                         ErrRootScopeInvalid,
	"CertificateScopeNotSubset":                                           ErrScopeNotSubset,
	"CertificateProfileInvalid":                                           ErrProfileInvalid,
	"AssertionError: Serialized ID does not match":                        ErrIDInvalid,
	"AssertionError: First cert in chain must be a root cert (no parent)": ErrChainBroken,
	"AssertionError: ID does not match expected value":                    ErrChainBroken,
}

func expectKind(t *testing.T, what string, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Errorf("%s: %v, want success", what, err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Errorf("%s: err = %v, want %v", what, err, want)
		return
	}
	for _, k := range kinds {
		if k != want && errors.Is(err, k) {
			t.Errorf("%s: err = %v matches %v as well as %v", what, err, k, want)
		}
	}
}

// wantOf returns the error kind for an outcome of the original.
func wantOf(t *testing.T, o outcome) error {
	t.Helper()
	if o.Result == "ok" {
		return nil
	}
	key := o.Raised
	if o.Raised == "AssertionError" {
		key += ": " + o.Message
	}
	want, ok := originalErrors[key]
	if !ok {
		t.Fatalf("no error kind for the original's %s", key)
	}
	return want
}

func TestCertificateErrorsFixture(t *testing.T) {
	var fx errorsFixture
	readFixture(t, "certificate_errors.json", &fx)
	f, _ := loadCertificates(t)
	defs := f.defs()
	if len(fx.Cases) == 0 {
		t.Fatal("no cases")
	}
	for _, c := range fx.Cases {
		t.Run(c.Case, func(t *testing.T) {
			var opts []VerifyOption
			if c.ExpectedLastID != nil {
				opts = append(opts, ExpectLastID(*c.ExpectedLastID))
			}
			verified, err := VerifyChain(c.Chain, defs, opts...)
			expectKind(t, "VerifyChain", err, wantOf(t, c.Save))
			if err == nil {
				if got := verified[len(verified)-1].ID; got != c.Save.ReturnedID {
					t.Errorf("last id %s, want %s", got, c.Save.ReturnedID)
				}
				var got []string
				for _, v := range verified {
					got = append(got, v.ID)
				}
				slices.Sort(got)
				if want := slices.Sorted(slices.Values(c.Saved)); !slices.Equal(got, want) {
					t.Errorf("verified %v, want %v", got, want)
				}
			} else if !strings.Contains(err.Error(), "certificate ") || !strings.Contains(err.Error(), " of ") {
				t.Errorf("error does not name the link: %v", err)
			}

			// check_certificate on the last link, its parent taken from
			// the chain.
			n := len(c.Chain)
			last, err := Deserialize(c.Chain[n-1].Serialized, c.Chain[n-1].Signature)
			if err != nil {
				t.Fatal(err)
			}
			var parent *Certificate
			if n > 1 {
				if parent, err = Deserialize(c.Chain[n-2].Serialized, c.Chain[n-2].Signature); err != nil {
					t.Fatal(err)
				}
			}
			expectKind(t, "Check on the last", last.Check(parent, defs), wantOf(t, c.CheckOnLast))
		})
	}
}

func TestFixtureChainVerifies(t *testing.T) {
	f, _ := loadCertificates(t)
	verified, err := VerifyChain(f.chain(), f.defs(), ExpectLastID(f.Grandchild.ID))
	if err != nil {
		t.Fatal(err)
	}
	for i, fc := range f.certs() {
		v := verified[i]
		if v.ID != fc.ID || v.Serialized != fc.Serialized || PublicKeyString(v.PublicKey) != fc.PublicKeyString {
			t.Errorf("certificate %d: %+v", i, v)
		}
	}
	// Every prefix of the chain verifies too.
	for n := 1; n <= 3; n++ {
		if _, err := VerifyChain(f.chain()[:n], f.defs()); err != nil {
			t.Errorf("first %d: %v", n, err)
		}
	}
	if !slices.Equal(Chain(verified), f.chain()) {
		t.Error("Chain of the verified certificates is not the input")
	}
}

func TestVerifyChainStructure(t *testing.T) {
	f, _ := loadCertificates(t)
	r, c, g := f.Root.link(), f.Child.link(), f.Grandchild.link()
	long := slices.Repeat([]Link{r}, MaxChainLength+1)
	bigSig := g
	bigSig.Signature = strings.Repeat("A", maxSignatureLen+1)
	emptyID := g
	emptyID.ID = ""
	cases := map[string]struct {
		chain []Link
		defs  Definitions
		want  error
	}{
		"empty":                 {nil, f.defs(), ErrMalformed},
		"too long":              {long, f.defs(), ErrMalformed},
		"oversized signature":   {[]Link{r, c, bigSig}, f.defs(), ErrMalformed},
		"empty id":              {[]Link{r, c, emptyID}, f.defs(), ErrMalformed},
		"garbage serialized":    {[]Link{r, {ID: c.ID, Serialized: "{", Signature: c.Signature}}, f.defs(), ErrMalformed},
		"root twice":            {[]Link{r, r}, f.defs(), ErrChainBroken},
		"child before root":     {[]Link{c, r}, f.defs(), ErrChainBroken},
		"generation skipped":    {[]Link{r, g}, f.defs(), ErrChainBroken},
		"grandchild alone":      {[]Link{g}, f.defs(), ErrChainBroken},
		"unknown definition":    {[]Link{r, c, g}, DefinitionList{f.def(t, "full-facility")}, ErrUnknownScopeDefinition},
		"no definitions":        {[]Link{r}, nil, ErrUnknownScopeDefinition},
		"signature of another":  {[]Link{r, {ID: c.ID, Serialized: c.Serialized, Signature: g.Signature}}, f.defs(), ErrSignatureInvalid},
		"signature not base64":  {[]Link{r, {ID: c.ID, Serialized: c.Serialized, Signature: "%%%"}}, f.defs(), ErrMalformed},
		"upper-case outer id":   {[]Link{{ID: strings.ToUpper(r.ID), Serialized: r.Serialized, Signature: r.Signature}}, f.defs(), ErrIDInvalid},
		"expected last matches": {[]Link{r, c}, f.defs(), nil},
	}
	for name, tc := range cases {
		var opts []VerifyOption
		if name == "expected last matches" {
			opts = append(opts, ExpectLastID(c.ID))
		}
		_, err := VerifyChain(tc.chain, tc.defs, opts...)
		expectKind(t, name, err, tc.want)
	}

	// Errors name the link and the certificate.
	_, err := VerifyChain([]Link{r, {ID: c.ID, Serialized: c.Serialized, Signature: g.Signature}}, f.defs())
	if want := "certificate 2 of 2 (" + c.ID + ")"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
}

func TestParseChain(t *testing.T) {
	f, _ := loadCertificates(t)
	data, err := json.Marshal(f.chain())
	if err != nil {
		t.Fatal(err)
	}
	links, err := ParseChain(data)
	if err != nil || !slices.Equal(links, f.chain()) {
		t.Fatalf("ParseChain = %v, %v", links, err)
	}
	indented, _ := json.MarshalIndent(f.chain(), "", "  ")
	if links, err := ParseChain(append(indented, '\n')); err != nil || !slices.Equal(links, f.chain()) {
		t.Errorf("indented: %v", err)
	}

	// The chain as the original's certificate API returns it, with the
	// unsigned extra fields.
	links, err = ParseChain(f.WireChain)
	if err != nil || !slices.Equal(links, f.chain()) {
		t.Fatalf("wire chain: %v, %v", links, err)
	}
	if _, err := VerifyChain(links, f.defs()); err != nil {
		t.Error(err)
	}

	one := func(fields string) string { return "[" + fields + "]" }
	r := f.Root.link()
	good := `"id": "` + r.ID + `", "serialized": ` + pyString(r.Serialized) + `, "signature": "` + r.Signature + `"`
	if _, err := ParseChain([]byte(one("{" + good + "}"))); err != nil {
		t.Fatalf("hand-written link: %v", err)
	}
	bad := map[string]string{
		"empty":             "",
		"empty list":        "[]",
		"object":            "{" + good + "}",
		"null":              "null",
		"null link":         "[null]",
		"string link":       `["x"]`,
		"unknown field":     one("{" + good + `, "extra": 1}`),
		"upper-case field":  one("{" + strings.Replace(good, `"id"`, `"ID"`, 1) + "}"),
		"duplicate field":   one("{" + good + `, "id": "` + r.ID + `"}`),
		"missing signature": one(`{"id": "` + r.ID + `", "serialized": ` + pyString(r.Serialized) + `}`),
		"numeric id":        one("{" + strings.Replace(good, `"id": "`+r.ID+`"`, `"id": 1`, 1) + "}"),
		"null signature":    one("{" + strings.Replace(good, `"signature": "`+r.Signature+`"`, `"signature": null`, 1) + "}"),
		"empty serialized":  one("{" + strings.Replace(good, `"serialized": `+pyString(r.Serialized), `"serialized": ""`, 1) + "}"),
		"long id":           one("{" + strings.Replace(good, r.ID, strings.Repeat("a", maxLinkIDLen+1), 1) + "}"),
		"trailing data":     one("{"+good+"}") + " []",
		"unterminated":      "[{" + good + "}",
		"too many":          "[" + strings.Repeat("{"+good+"},", MaxChainLength) + "{" + good + "}]",
		"too big":           one("{"+good+"}") + strings.Repeat(" ", maxChainBytes),
	}
	for name, s := range bad {
		if _, err := ParseChain([]byte(s)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
	exact := "[" + strings.Repeat("{"+good+"},", MaxChainLength-1) + "{" + good + "}]"
	if links, err := ParseChain([]byte(exact)); err != nil || len(links) != MaxChainLength {
		t.Errorf("%d links: %v", MaxChainLength, err)
	}
}
