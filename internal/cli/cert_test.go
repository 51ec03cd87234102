package cli

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/morango-sync/morango/certs"
	"github.com/morango-sync/morango/internal/school"
)

// morango runs a command in-process and returns its output.
func morango(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var buf bytes.Buffer
	err := Run(context.Background(), append([]string{"morango"}, args...), &buf, &buf)
	return buf.String(), err
}

func schoolDB(t *testing.T, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name+".sqlite3")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(school.Schema()); err != nil {
		t.Fatal(err)
	}
	prof := filepath.Join(dir, "profile.json")
	if err := os.WriteFile(prof, school.ProfileJSON(), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := morango(t, "init", "--db", path, "--profile", prof); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	return path
}

// A request, grant and import between two databases, and a grant refused
// for a scope wider than the parent's.
func TestCertificateRoundTripBetweenDatabases(t *testing.T) {
	dir := t.TempDir()
	laptop, tablet := schoolDB(t, dir, "laptop"), schoolDB(t, dir, "tablet")
	out, err := morango(t, "cert", "root", "--db", laptop, "--scope", "full-facility", "--json")
	if err != nil {
		t.Fatal(err, out)
	}
	var root struct{ ID string }
	if err := json.Unmarshal([]byte(out), &root); err != nil {
		t.Fatal(err)
	}
	learner := strings.Repeat("a", 32)
	req, chain := filepath.Join(dir, "tablet.request"), filepath.Join(dir, "tablet.chain")
	if out, err := morango(t, "cert", "request", "--db", tablet, "--scope", "single-user",
		"--param", "dataset_id="+root.ID, "--param", "user_id="+learner, "-o", req); err != nil {
		t.Fatal(err, out)
	}
	// The request file holds no private key; the tablet's database does.
	if data, _ := os.ReadFile(req); bytes.Contains(data, []byte("PRIVATE")) {
		t.Fatal("request file holds a private key")
	}
	if out, err := morango(t, "cert", "grant", "--db", laptop, "--parent", root.ID, req, "-o", chain); err != nil {
		t.Fatal(err, out)
	}
	if out, err := morango(t, "cert", "import", "--db", tablet, chain); err != nil || !strings.Contains(out, "trusted root "+root.ID) {
		t.Fatal(err, out)
	}
	out, err = morango(t, "cert", "list", "--db", tablet, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var list []struct {
		ID      string `json:"id"`
		Scope   string `json:"scope"`
		HasKey  bool   `json:"has_private_key"`
		Trusted bool   `json:"trusted_root"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || !list[0].Trusted || list[0].HasKey || list[1].Scope != "single-user" || !list[1].HasKey {
		t.Errorf("tablet's certificates: %+v", list)
	}
	// The chain verifies without a database.
	if out, err := morango(t, "cert", "verify", "--profile", filepath.Join(dir, "profile.json"), chain); err != nil || !strings.HasPrefix(out, "valid: 2 certificates") {
		t.Errorf("verify: %v %s", err, out)
	}

	// The tablet asks for the whole facility: the single-user certificate
	// cannot grant it, and neither can a root of another dataset.
	wide := filepath.Join(dir, "wide.request")
	if out, err := morango(t, "cert", "request", "--db", laptop, "--scope", "full-facility", "--param", "dataset_id="+root.ID, "-o", wide); err != nil {
		t.Fatal(err, out)
	}
	_, err = morango(t, "cert", "grant", "--db", tablet, "--parent", list[1].ID, wide, "-o", filepath.Join(dir, "wide.chain"))
	if !errors.Is(err, certs.ErrScopeNotSubset) {
		t.Errorf("grant of a wider scope: %v, want ErrScopeNotSubset", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "wide.chain")); !os.IsNotExist(err) {
		t.Error("a refused grant wrote a chain")
	}
}

// Chains made by the original Morango verify with the sample profile.
func TestOriginalChainVerifies(t *testing.T) {
	data, err := os.ReadFile("../../testdata/morango/certificates.json")
	if err != nil {
		t.Fatal(err)
	}
	var fx map[string]json.RawMessage
	if err := json.Unmarshal(data, &fx); err != nil {
		t.Fatal(err)
	}
	var links []certs.Link
	for _, k := range []string{"root", "child_full_facility_salted", "grandchild_single_user"} {
		var l certs.Link
		if err := json.Unmarshal(fx[k], &l); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		links = append(links, l)
	}
	dir := t.TempDir()
	chain, _ := json.Marshal(links)
	path := filepath.Join(dir, "chain.json")
	if err := os.WriteFile(path, chain, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "profile.json"), school.ProfileJSON(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := morango(t, "cert", "verify", "--profile", filepath.Join(dir, "profile.json"), path)
	if err != nil || !strings.HasPrefix(out, "valid: 3 certificates") {
		t.Errorf("original chain: %v %s", err, out)
	}
	links[1].Signature = links[2].Signature
	chain, _ = json.Marshal(links)
	os.WriteFile(path, chain, 0o644)
	if _, err := morango(t, "cert", "verify", "--profile", filepath.Join(dir, "profile.json"), path); !errors.Is(err, certs.ErrSignatureInvalid) {
		t.Errorf("tampered chain: %v, want ErrSignatureInvalid", err)
	}
}

// Counts read as English: one chunk, two chunks, no entries.
func TestCount(t *testing.T) {
	for _, c := range []struct {
		n    int
		noun string
		want string
	}{
		{1, "chunk", "1 chunk"}, {2, "chunk", "2 chunks"}, {0, "entry", "0 entries"}, {3, "key", "3 keys"},
	} {
		if got := count(c.n, c.noun); got != c.want {
			t.Errorf("count(%d, %q) = %q, want %q", c.n, c.noun, got, c.want)
		}
	}
}
