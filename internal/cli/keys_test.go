package cli

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/morango-sync/morango/bundle"
	"github.com/morango-sync/morango/certs"
)

// keyLeak finds private keys in text. It knows every private key the test
// databases hold, in the forms a careless print would show: the PEM, any
// line of its base64 body (so a PEM escaped in JSON, or cut, is found too),
// and the private exponent and primes in decimal (fmt's %v of an
// *rsa.PrivateKey) and hexadecimal.
type keyLeak struct {
	needles map[string]string // needle → what it is
}

func (k *keyLeak) add(t *testing.T, pemText string) {
	t.Helper()
	key, err := certs.ParsePrivateKey(pemText)
	if err != nil {
		t.Fatalf("a stored private key does not parse: %v", err)
	}
	if k.needles == nil {
		k.needles = map[string]string{"PRIVATE KEY": "a PEM private-key header"}
	}
	k.needles[pemText] = "a private key's PEM"
	// The PEM's first lines encode the public modulus, which a certificate
	// shows: only the lines after it, which encode the private exponent and
	// primes, are secret. Each line encodes 48 bytes of the DER.
	blk, _ := pem.Decode([]byte(pemText))
	if blk == nil {
		t.Fatal("a stored private key is not PEM")
	}
	private := bytes.Index(blk.Bytes, key.D.Bytes())
	if private < 0 {
		t.Fatal("no private exponent in the key's DER")
	}
	body := 0
	for _, l := range strings.Split(pemText, "\n") {
		if l == "" || strings.HasPrefix(l, "-----") {
			continue
		}
		if body*48 >= private && len(l) >= 32 {
			k.needles[l] = "a line of a private key's PEM"
		}
		body++
	}
	for name, v := range map[string]interface{ Text(int) string }{"exponent": key.D, "prime": key.Primes[0]} {
		k.needles[v.Text(10)[:60]] = "a private key's " + name + " in decimal"
		k.needles[v.Text(16)[:60]] = "a private key's " + name + " in hexadecimal"
	}
}

// find returns what text holds of a private key.
func (k *keyLeak) find(text []byte) []string {
	var l []string
	for n, what := range k.needles {
		if bytes.Contains(text, []byte(n)) {
			l = append(l, what)
		}
	}
	slices.Sort(l)
	return slices.Compact(l)
}

// check fails if text holds a private key.
func (k *keyLeak) check(t *testing.T, where string, text []byte) {
	t.Helper()
	if found := k.find(text); len(found) > 0 {
		t.Errorf("%s holds %s", where, strings.Join(found, ", "))
	}
}

// selfCheck makes sure the finder sees a key printed in the ways a
// careless print would, and not in a certificate, which holds the public
// half.
func (k *keyLeak) selfCheck(t *testing.T, pemText, public string) {
	t.Helper()
	key, err := certs.ParsePrivateKey(pemText)
	if err != nil {
		t.Fatal(err)
	}
	escaped, _ := json.Marshal(map[string]string{"key": pemText})
	body := strings.Join(strings.Split(pemText, "\n")[1:], "\n")
	for what, text := range map[string]string{
		"as JSON":               string(escaped),
		"with %v":               fmt.Sprintf("%v", key),
		"without its PEM lines": body[len(body)/2:],
	} {
		if len(k.find([]byte(text))) == 0 {
			t.Errorf("the leak finder misses a private key printed %s", what)
		}
	}
	if found := k.find([]byte(public)); len(found) > 0 {
		t.Errorf("the leak finder sees %s in public data", strings.Join(found, ", "))
	}
}

// storedKeys returns the private keys a database holds, of certificates
// and of requests.
func storedKeys(t *testing.T, path string) []string {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT private_key FROM morango_certificate WHERE private_key IS NOT NULL
		UNION SELECT private_key FROM morango_certrequest`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var l []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		l = append(l, k)
	}
	return l
}

// bundleText returns what a bundle carries, decompressed: its header and
// every field of every record.
func bundleText(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := bundle.NewReader(f, &bundle.ReaderOptions{Unverified: true})
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	out, err := json.Marshal(r.Header())
	if err != nil {
		t.Fatal(err)
	}
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

// TestPrivateKeysStayInTheDatabase runs every command that touches
// certificates, sync or files, on success and on failure, and checks that
// no private key ever appears in what they print (stdout, and stderr as
// main prints an error with its hint) nor in a file they write (requests,
// chains, manifests, bundles, decompressed); and that the database files
// that hold keys are readable by their owner only.
func TestPrivateKeysStayInTheDatabase(t *testing.T) {
	dir := t.TempDir()
	at := func(name string) string { return filepath.Join(dir, name) }
	laptop, tablet := schoolDB(t, dir, "laptop"), schoolDB(t, dir, "tablet")
	profilePath := at("profile.json")

	var printed bytes.Buffer
	run := func(wantErr bool, args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		ctx := context.Background()
		err := Run(ctx, append([]string{"morango"}, args...), &stdout, &stderr)
		ExitCode(ctx, err, &stderr) // what main prints
		if (err != nil) != wantErr {
			t.Fatalf("morango %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
		}
		printed.WriteString("$ morango " + strings.Join(args, " ") + "\n")
		printed.Write(stdout.Bytes())
		printed.Write(stderr.Bytes())
		return stdout.String()
	}
	var root, leaf struct{ ID string }
	if err := json.Unmarshal([]byte(run(false, "cert", "root", "--db", laptop, "--scope", "full-facility", "--json")), &root); err != nil {
		t.Fatal(err)
	}
	run(false, "cert", "root", "--db", laptop, "--scope", "full-facility", "--another")
	learner := strings.Repeat("b", 32)
	run(false, "cert", "request", "--db", tablet, "--scope", "single-user",
		"--param", "dataset_id="+root.ID, "--param", "user_id="+learner, "-o", at("tablet.request"))
	if err := json.Unmarshal([]byte(run(false, "cert", "grant", "--db", laptop, "--parent", root.ID, at("tablet.request"),
		"-o", at("tablet.chain"), "--json")), &leaf); err != nil {
		t.Fatal(err)
	}
	run(false, "cert", "import", "--db", tablet, at("tablet.chain"))
	run(false, "cert", "import", "--db", tablet, at("tablet.chain"), "--json")
	run(false, "cert", "request", "--db", laptop, "--scope", "full-facility", "--param", "dataset_id="+root.ID, "-o", at("laptop.request"))
	for _, db := range []string{laptop, tablet} {
		run(false, "cert", "list", "--db", db)
		run(false, "cert", "list", "--db", db, "--json")
		run(false, "status", "--db", db)
		run(false, "status", "--db", db, "--json")
		run(false, "verify", "--db", db)
	}
	for _, id := range []string{root.ID, leaf.ID} {
		run(false, "cert", "show", "--db", tablet, id)
		run(false, "cert", "show", "--db", tablet, id, "--json")
	}
	run(false, "cert", "verify", "--profile", profilePath, at("tablet.chain"))
	run(false, "cert", "verify", "--profile", profilePath, at("tablet.chain"), "--json")

	// Sync: manifests, bundles, inspection, exchange through a folder.
	run(false, "manifest", "--db", tablet, "--cert", leaf.ID, "-o", at("tablet.manifest"))
	run(false, "export", "--db", laptop, "--cert", root.ID, "--for", at("tablet.manifest"), "-o", at("for-tablet.bundle"), "--json")
	run(false, "export", "--db", laptop, "--cert", root.ID, "-o", at("all.bundle"))
	run(false, "export", "--db", tablet, "--cert", leaf.ID, "-o", at("from-tablet.bundle"))
	for _, f := range []string{"for-tablet.bundle", "all.bundle", "tablet.manifest"} {
		run(false, "inspect", "--profile", profilePath, "--records", at(f))
		run(false, "inspect", "--json", at(f))
	}
	// A valid signature has no problem after it: no line ends in a space.
	if out := run(false, "inspect", at("for-tablet.bundle")); !strings.Contains(out, "signature  valid\n") || strings.Contains(out, " \n") {
		t.Errorf("inspect:\n%q", out)
	}
	run(false, "import", "--db", tablet, at("for-tablet.bundle"))
	run(false, "import", "--db", laptop, at("from-tablet.bundle"), "--json")
	stick := at("stick")
	if err := os.Mkdir(stick, 0o755); err != nil {
		t.Fatal(err)
	}
	run(false, "exchange", "--db", tablet, "--cert", leaf.ID, stick)
	run(false, "exchange", "--db", laptop, "--cert", root.ID, "--json", stick)
	run(false, "exchange", "--db", tablet, "--cert", leaf.ID, stick)
	run(false, "conflicts", "--db", laptop)

	// Failures print errors and hints, never a key.
	run(true, "cert", "grant", "--db", tablet, "--parent", root.ID, at("laptop.request"), "-o", at("refused.chain"))
	run(true, "cert", "grant", "--db", tablet, "--parent", leaf.ID, at("laptop.request"), "-o", at("refused.chain"))
	run(true, "cert", "show", "--db", tablet, strings.Repeat("0", 32))
	run(true, "export", "--db", tablet, "--cert", root.ID, "-o", at("refused.bundle"))
	run(true, "cert", "import", "--db", laptop, at("tablet.request"))
	run(true, "import", "--db", laptop, at("tablet.request"))
	run(true, "inspect", at("tablet.chain"))
	tampered, err := os.ReadFile(at("all.bundle"))
	if err != nil {
		t.Fatal(err)
	}
	tampered[len(tampered)-10] ^= 1
	if err := os.WriteFile(at("tampered.bundle"), tampered, 0o644); err != nil {
		t.Fatal(err)
	}
	run(true, "import", "--db", tablet, at("tampered.bundle"))
	run(true, "cert", "root", "--db", laptop, "--scope", "no-such-scope")
	run(false, "cert", "--help")
	run(false, "cert", "root", "--help")

	var leak keyLeak
	var all []string
	for _, db := range []string{laptop, tablet} {
		keys := storedKeys(t, db)
		if len(keys) == 0 {
			t.Fatalf("%s holds no private key", db)
		}
		for _, k := range keys {
			leak.add(t, k)
		}
		all = append(all, keys...)
	}
	if len(all) < 3 { // the root's, the tablet's, the laptop's request's
		t.Fatalf("the databases hold %d private keys", len(all))
	}
	chain, err := os.ReadFile(at("tablet.chain"))
	if err != nil {
		t.Fatal(err)
	}
	leak.selfCheck(t, all[0], string(chain))
	leak.check(t, "the commands' output", printed.Bytes())

	// Every file the commands wrote, bundles decompressed.
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.Contains(p, ".sqlite3") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		leak.check(t, p, b)
		if strings.HasSuffix(p, ".bundle") && !strings.Contains(p, "tampered") {
			leak.check(t, p+" (decompressed)", bundleText(t, p))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// The databases hold keys: they, and the files beside them, are
	// readable by their owner only.
	if runtime.GOOS != "windows" {
		for _, db := range []string{laptop, tablet} {
			for _, s := range []string{"", "-wal", "-shm"} {
				fi, err := os.Stat(db + s)
				if os.IsNotExist(err) && s != "" {
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm()&0o077 != 0 {
					t.Errorf("%s%s has mode %#o: others may read the private keys in it", filepath.Base(db), s, fi.Mode().Perm())
				}
			}
		}
	}
}

// TestDemoKeepsKeysInDatabases runs the demo, which makes certificates on
// five devices and moves them through a folder, and checks that none of
// their private keys is printed or lands in a file outside a database.
func TestDemoKeepsKeysInDatabases(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo takes seconds")
	}
	dir := t.TempDir()
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"morango", "demo", "--dir", dir, "--records", "100"}, &out, &out); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	var leak keyLeak
	n := 0
	for _, dev := range demoDevices {
		for _, k := range storedKeys(t, filepath.Join(dir, dev, "school.sqlite3")) {
			leak.add(t, k)
			n++
		}
	}
	if n < len(demoDevices) {
		t.Fatalf("the demo's devices hold %d private keys", n)
	}
	leak.check(t, "the demo's output", out.Bytes())
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.Contains(p, ".sqlite3") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		leak.check(t, p, b)
		if strings.HasSuffix(p, ".bundle") {
			leak.check(t, p+" (decompressed)", bundleText(t, p))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
