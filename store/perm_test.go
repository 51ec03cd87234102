package store

import (
	"io/fs"
	"os"
	"runtime"
	"testing"

	"github.com/morango-sync/morango/certs"
)

func skipOnWindows(t *testing.T) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("Windows permissions are not mode bits")
	}
}

// modes returns the permission bits of the database file and of its
// sidecar files that exist.
func modes(t *testing.T, path string) map[string]fs.FileMode {
	t.Helper()
	m := map[string]fs.FileMode{}
	for _, s := range sidecarSuffixes {
		fi, err := os.Stat(path + s)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		m[s] = fi.Mode().Perm()
	}
	return m
}

func chmodAll(t *testing.T, path string, mode fs.FileMode) {
	t.Helper()
	for _, s := range sidecarSuffixes {
		if err := os.Chmod(path+s, mode); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
}

// wantModes fails unless the database file and its sidecars, which must
// include the WAL's two, all have mode want.
func wantModes(t *testing.T, path string, want fs.FileMode, when string) {
	t.Helper()
	m := modes(t, path)
	for _, s := range []string{"", "-wal", "-shm"} {
		if _, ok := m[s]; !ok {
			t.Errorf("%s: no file %s%s", when, "db", s)
		}
	}
	for s, mode := range m {
		if mode != want {
			t.Errorf("%s: db%s has mode %#o, want %#o", when, s, mode, want)
		}
	}
}

func TestRestrictFiles(t *testing.T) {
	skipOnWindows(t)
	dir := t.TempDir()
	p := dir + "/app.sqlite3"
	for s, mode := range map[string]fs.FileMode{"": 0o644, "-wal": 0o666, "-shm": 0o640, "-journal": 0o400} {
		if err := os.WriteFile(p+s, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p+s, mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := restrictFiles(p); err != nil {
		t.Fatal(err)
	}
	// The owner's bits stay as they were; nobody else keeps any.
	for s, want := range map[string]fs.FileMode{"": 0o600, "-wal": 0o600, "-shm": 0o600, "-journal": 0o400} {
		if got := modes(t, p)[s]; got != want {
			t.Errorf("db%s: mode %#o, want %#o", s, got, want)
		}
	}
	// Missing sidecars are no error.
	q := dir + "/alone.sqlite3"
	if err := os.WriteFile(q, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(q, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := restrictFiles(q); err != nil {
		t.Fatal(err)
	}
	if got := modes(t, q)[""]; got != 0o600 {
		t.Errorf("mode %#o", got)
	}
}

// A database without private keys keeps the permissions the app gave it;
// one that holds a key (of a certificate or of a request) is made readable
// by its owner only when it is opened, the WAL's files included, and the
// files SQLite creates afterwards follow the database file.
func TestOpenProtectsKeys(t *testing.T) {
	skipOnWindows(t)
	ctx := t.Context()
	for _, kind := range []string{"certificate", "request"} {
		t.Run(kind, func(t *testing.T) {
			d := newDevice(t, "keys")
			d.init(ctx)
			chmodAll(t, d.path, 0o644)
			d.db.Close()
			db, err := Open(ctx, d.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			wantModes(t, d.path, 0o644, "no key")
			switch kind {
			case "certificate":
				def := certs.ScopeDefinition{ID: "s", Profile: "testdata", Version: 1, PrimaryScopeParamKey: "dataset_id",
					ReadWriteFilterTemplate: "${dataset_id}"}
				root, err := certs.NewRoot(def, nil)
				if err != nil {
					t.Fatal(err)
				}
				err = db.SaveCertificate(ctx, root, certs.PrivateKeyString(root.PrivateKey), true)
				if err != nil {
					t.Fatal(err)
				}
			case "request":
				if err := db.SaveRequest(ctx, "public", "s", "{}", "-----BEGIN RSA PRIVATE KEY-----\n..."); err != nil {
					t.Fatal(err)
				}
			}
			db.Close()
			chmodAll(t, d.path, 0o644)

			db, err = Open(ctx, d.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			wantModes(t, d.path, 0o600, "opened with a key")
			// The last connection's close removes the WAL's files; the
			// next open creates them again, with the database file's mode.
			db.Close()
			d.app.Close()
			for _, s := range []string{"-wal", "-shm"} {
				os.Remove(d.path + s)
			}
			db, err = Open(ctx, d.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Serialize(ctx); err != nil {
				t.Fatal(err)
			}
			wantModes(t, d.path, 0o600, "reopened")
		})
	}
}

func TestProtectKeyFiles(t *testing.T) {
	skipOnWindows(t)
	d := newDevice(t, "protect")
	d.init(t.Context())
	chmodAll(t, d.path, 0o664)
	if err := d.db.protectKeyFiles(); err != nil {
		t.Fatal(err)
	}
	wantModes(t, d.path, 0o600, "protected")
}

// Storing a private key must not write it into a file others can read: the
// files are protected before the key is written, not only at the next open.
func TestStoringAKeyProtectsTheFiles(t *testing.T) {
	skipOnWindows(t)
	ctx := t.Context()
	d := newDevice(t, "store")
	d.init(ctx)
	chmodAll(t, d.path, 0o644)
	if err := d.db.SaveRequest(ctx, "public", "s", "{}", "-----BEGIN RSA PRIVATE KEY-----\n..."); err != nil {
		t.Fatal(err)
	}
	wantModes(t, d.path, 0o600, "after SaveRequest")
}
