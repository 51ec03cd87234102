package session_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite"

	"github.com/morango-sync/morango/certs"
	"github.com/morango-sync/morango/profile"
	"github.com/morango-sync/morango/session"
	"github.com/morango-sync/morango/store"
)

const exampleProfile = `{
  "profile": "notes",
  "models": [{"name": "note", "table": "note", "partition": "${dataset_id}:shared"}],
  "scope_definitions": [{"id": "full", "profile": "notes", "version": 1, "primary_scope_param_key": "dataset_id",
    "description": "everything under ${dataset_id}", "read_filter_template": "", "write_filter_template": "",
    "read_write_filter_template": "${dataset_id}"}]
}`

// Two devices share notes through a bundle file, using the library alone:
// open the app's databases with a profile, make a root certificate on one
// and grant the other a certificate, then export and import.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	p, err := profile.Parse([]byte(exampleProfile))
	if err != nil {
		log.Fatal(err)
	}

	// Each device's app has its own SQLite file and writes it with plain SQL.
	open := func(name string) (*sql.DB, *store.DB) {
		path := filepath.Join(dir, name+".sqlite3")
		app, err := sql.Open("sqlite", path)
		if err != nil {
			log.Fatal(err)
		}
		if _, err := app.Exec(`CREATE TABLE note (id TEXT PRIMARY KEY, dataset_id TEXT NOT NULL, body TEXT)`); err != nil {
			log.Fatal(err)
		}
		db, err := store.Init(ctx, path, p, &store.Options{SystemID: name, NodeID: name})
		if err != nil {
			log.Fatal(err)
		}
		return app, db
	}
	appA, a := open("a")
	appB, b := open("b")
	defer a.Close()
	defer b.Close()

	// Device A makes the root; B asks for a certificate and A grants it.
	def, _ := p.ScopeDefinition("full")
	root, err := certs.NewRoot(def, nil)
	if err != nil {
		log.Fatal(err)
	}
	check(a.SaveCertificate(ctx, root, certs.PrivateKeyString(root.PrivateKey), true))
	req, key, err := certs.NewRequest(def, map[string]string{"dataset_id": root.ID}, p.Name)
	if err != nil {
		log.Fatal(err)
	}
	child, err := root.Grant(req, p)
	if err != nil {
		log.Fatal(err)
	}
	check(b.SaveCertificate(ctx, root, "", true))
	check(b.SaveCertificate(ctx, child, certs.PrivateKeyString(key), false))

	// A's app writes a note; A exports everything its certificate covers.
	_, err = appA.Exec(`INSERT INTO note (id, dataset_id, body) VALUES ('0123456789abcdef0123456789abcdef', ?, 'hello')`, root.ID)
	check(err)
	bundle := filepath.Join(dir, "a.bundle")
	exp, err := session.Export(ctx, a, &session.DiskConnection{Bundle: bundle}, session.ExportOptions{CertID: root.ID})
	check(err)
	fmt.Println("exported", exp.Records, "record")

	// B verifies and imports it; the note is in B's app table.
	imp, err := session.Import(ctx, b, &session.DiskConnection{Bundle: bundle}, session.ImportOptions{})
	check(err)
	fmt.Println("imported", imp.Store.New, "new record")
	var body string
	check(appB.QueryRow(`SELECT body FROM note`).Scan(&body))
	fmt.Println("B's app reads:", body)
	// Output:
	// exported 1 record
	// imported 1 new record
	// B's app reads: hello
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
