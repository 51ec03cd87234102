package certs

import (
	"crypto/rsa"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// The reference data produced by the original Morango (see
// ../testdata/morango/README.md).
const fixtureDir = "../testdata/morango"

func readFixture(t testing.TB, name string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtureDir, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

type fixtureCert struct {
	ID                string  `json:"id"`
	ParentID          *string `json:"parent_id"`
	Profile           string  `json:"profile"`
	ScopeDefinitionID string  `json:"scope_definition_id"`
	ScopeVersion      int     `json:"scope_version"`
	ScopeParams       string  `json:"scope_params"`
	Salt              string  `json:"salt"`
	PublicKeyString   string  `json:"public_key_string"`
	Serialized        string  `json:"serialized"`
	Signature         string  `json:"signature"`
	IDComputation     struct {
		Argument string `json:"sha2_uuid_argument"`
		Result   string `json:"result"`
	} `json:"id_computation"`
	Scope struct {
		Read  []string `json:"read_filter"`
		Write []string `json:"write_filter"`
	} `json:"scope"`
	Description      string `json:"description"`
	PrivateKeyString string `json:"private_key_string"`
}

func (f *fixtureCert) link() Link { return Link{f.ID, f.Serialized, f.Signature} }

type certificatesFixture struct {
	ScopeDefinitions []ScopeDefinition `json:"scope_definitions"`
	Root             fixtureCert       `json:"root"`
	Child            fixtureCert       `json:"child_full_facility_salted"`
	Grandchild       fixtureCert       `json:"grandchild_single_user"`
	WireChain        json.RawMessage   `json:"wire_chain_for_grandchild"`
	SigningExamples  []struct {
		Signer             string `json:"signer"`
		Message            string `json:"message"`
		Signature          string `json:"signature"`
		VerifyWithRoot     bool   `json:"verify_with_root_public_key"`
		VerifyWithChild    bool   `json:"verify_with_child_public_key"`
		VerifyTampered     bool   `json:"verify_tampered_message"`
		SameSignatureTwice *bool  `json:"same_signature_twice"`
	} `json:"signing_examples"`
	ScopeSubsetChecks map[string]bool `json:"scope_subset_checks"`
}

// certs returns the three fixture certificates, root first.
func (f *certificatesFixture) certs() []*fixtureCert {
	return []*fixtureCert{&f.Root, &f.Child, &f.Grandchild}
}

func (f *certificatesFixture) chain() []Link {
	return []Link{f.Root.link(), f.Child.link(), f.Grandchild.link()}
}

func (f *certificatesFixture) defs() DefinitionList { return f.ScopeDefinitions }

func (f *certificatesFixture) def(t testing.TB, id string) ScopeDefinition {
	t.Helper()
	d, ok := f.defs().ScopeDefinition(id)
	if !ok {
		t.Fatalf("no scope definition %s in the fixture", id)
	}
	return d
}

var (
	fixtureOnce sync.Once
	fixture     certificatesFixture
	fixtureKeys map[string]*rsa.PrivateKey
	fixtureErr  error
)

// loadCertificates returns certificates.json and the fixture's private keys
// by certificate id, parsed once.
func loadCertificates(t testing.TB) (*certificatesFixture, map[string]*rsa.PrivateKey) {
	t.Helper()
	fixtureOnce.Do(func() {
		data, err := os.ReadFile(filepath.Join(fixtureDir, "certificates.json"))
		if err != nil {
			fixtureErr = err
			return
		}
		if err := json.Unmarshal(data, &fixture); err != nil {
			fixtureErr = err
			return
		}
		fixtureKeys = map[string]*rsa.PrivateKey{}
		for _, c := range fixture.certs() {
			k, err := ParsePrivateKey(c.PrivateKeyString)
			if err != nil {
				fixtureErr = err
				return
			}
			fixtureKeys[c.ID] = k
		}
	})
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
	return &fixture, fixtureKeys
}

type errorCase struct {
	Case           string   `json:"case"`
	Description    string   `json:"description"`
	Chain          []Link   `json:"chain"`
	ExpectedLastID *string  `json:"expected_last_id"`
	CheckOnLast    outcome  `json:"check_certificate_on_last"`
	Save           outcome  `json:"save_certificate_chain"`
	Saved          []string `json:"certificates_saved"`
}

type outcome struct {
	Result     string `json:"result"`
	ReturnedID string `json:"returned_id"`
	Raised     string `json:"raised"`
	Message    string `json:"message"`
}

type errorsFixture struct {
	RootPublicKey  string      `json:"root_public_key_string"`
	ChildPublicKey string      `json:"child_public_key_string"`
	Cases          []errorCase `json:"cases"`
}
