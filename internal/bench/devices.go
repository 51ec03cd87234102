package bench

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/morango-sync/morango/certs"
	"github.com/morango-sync/morango/internal/school"
	"github.com/morango-sync/morango/profile"
	"github.com/morango-sync/morango/store"
)

// device is one database of the sample app: the app's own connection and
// the engine's handle.
type device struct {
	name string
	path string
	app  *sql.DB
	db   *store.DB
	cert string // the certificate this device signs with
}

func (d *device) close() {
	if d.db != nil {
		d.db.Close()
	}
	if d.app != nil {
		d.app.Close()
	}
}

// appDSN opens a database as the app itself does, with the engine's
// durability settings so that the floor pays what the engine pays.
func appDSN(path string) string {
	return path + "?_pragma=busy_timeout(30000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate"
}

// newDevice creates the app's tables in a fresh file and installs the sync
// tables.
func newDevice(ctx context.Context, dir, name string, p *profile.Profile, pageSize int) (*device, error) {
	d := &device{name: name, path: filepath.Join(dir, name+".sqlite3")}
	if err := createApp(ctx, d.path, pageSize); err != nil {
		return nil, err
	}
	var err error
	if d.app, err = sql.Open("sqlite", appDSN(d.path)); err != nil {
		return nil, err
	}
	d.db, err = store.Init(ctx, d.path, p, &store.Options{SystemID: "bench-system-" + name, NodeID: "bench-node-" + name})
	if err != nil {
		d.close()
		return nil, fmt.Errorf("init %s: %w", name, err)
	}
	return d, nil
}

// createApp writes the app's schema into a new file, with pages of
// pageSize bytes (0: SQLite's default). The page size of a database is
// chosen before its first table, and cannot change in WAL mode: the file is
// opened without the DSN's journal mode, which would come first.
func createApp(ctx context.Context, path string, pageSize int) error {
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("%s exists already", path)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	var stmts []string
	if pageSize != 0 {
		stmts = append(stmts, fmt.Sprintf("PRAGMA page_size = %d", pageSize))
	}
	stmts = append(stmts, "PRAGMA journal_mode = WAL", school.Schema())
	for _, q := range stmts {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	if pageSize != 0 {
		var got int
		if err := db.QueryRowContext(ctx, "PRAGMA page_size").Scan(&got); err != nil {
			return err
		}
		if got != pageSize {
			return fmt.Errorf("page size %d: SQLite took %d (a power of two from 512 to 65536)", pageSize, got)
		}
	}
	return nil
}

// setup makes devices A (the facility: a full-facility root certificate
// whose id is the dataset id, and the school's data) and B (a
// full-facility certificate granted by A, A's root trusted), the way
// 'morango cert root / request / grant / import' do it.
func setup(ctx context.Context, dir string, records int, seed uint64, pageSize int) (a, b *device, sum school.Summary, genTime time.Duration, err error) {
	p, err := profile.Parse(school.ProfileJSON())
	if err != nil {
		return nil, nil, sum, 0, err
	}
	def, ok := p.ScopeDefinition("full-facility")
	if !ok {
		return nil, nil, sum, 0, fmt.Errorf("the school profile has no full-facility scope")
	}
	if a, err = newDevice(ctx, dir, "a", p, pageSize); err != nil {
		return nil, nil, sum, 0, err
	}
	defer func() {
		if err != nil {
			a.close()
			if b != nil {
				b.close()
			}
		}
	}()
	root, err := certs.NewRoot(def, nil)
	if err != nil {
		return nil, nil, sum, 0, err
	}
	if err = a.db.SaveCertificate(ctx, root, certs.PrivateKeyString(root.PrivateKey), true); err != nil {
		return nil, nil, sum, 0, err
	}
	a.cert = root.ID

	if b, err = newDevice(ctx, dir, "b", p, pageSize); err != nil {
		return nil, nil, sum, 0, err
	}
	req, key, err := certs.NewRequest(def, map[string]string{def.PrimaryScopeParamKey: root.ID}, p.Name)
	if err != nil {
		return nil, nil, sum, 0, err
	}
	if err = b.db.SaveRequest(ctx, req.PublicKey, def.ID, req.ScopeParams, certs.PrivateKeyString(key)); err != nil {
		return nil, nil, sum, 0, err
	}
	child, err := root.Grant(req, a.db.Profile())
	if err != nil {
		return nil, nil, sum, 0, err
	}
	if err = a.db.SaveCertificate(ctx, child, "", false); err != nil {
		return nil, nil, sum, 0, err
	}
	chain, err := a.db.Chain(ctx, child.ID)
	if err != nil {
		return nil, nil, sum, 0, err
	}
	verified, err := certs.VerifyChain(chain, b.db.Profile())
	if err != nil {
		return nil, nil, sum, 0, err
	}
	for i, c := range verified {
		k, err := b.db.RequestKey(ctx, certs.PublicKeyString(c.PublicKey))
		if err != nil {
			return nil, nil, sum, 0, err
		}
		if err = b.db.SaveCertificate(ctx, c, k, i == 0); err != nil {
			return nil, nil, sum, 0, err
		}
	}
	b.cert = child.ID

	start := time.Now()
	// Generating holds far more than a sync stage: it runs without the
	// command's soft memory limit, so that the collector does not work
	// against it.
	limit := debug.SetMemoryLimit(math.MaxInt64)
	sum, err = school.Generate(ctx, a.app, root.ID, school.Options{Seed: seed, Records: records})
	debug.SetMemoryLimit(limit)
	genTime = time.Since(start)
	if err != nil {
		return nil, nil, sum, 0, fmt.Errorf("generate: %w", err)
	}
	// The bulk load ran with a large page cache, whose memory SQLite's
	// allocator keeps until the connection closes: reopen the app, so that
	// the memory of the stages that follow is theirs.
	if err = a.reopenApp(); err != nil {
		return nil, nil, sum, 0, err
	}
	return a, b, sum, genTime, nil
}

// reopenApp closes the app's connections and opens new ones.
func (d *device) reopenApp() error {
	if err := d.app.Close(); err != nil {
		return err
	}
	var err error
	d.app, err = sql.Open("sqlite", appDSN(d.path))
	return err
}

// appTables lists the app's tables in the order their rows are landed:
// foreign-key targets first.
func appTables(p *profile.Profile) []string {
	var ts []string
	for _, m := range p.Ordered() {
		ts = append(ts, m.Table)
	}
	return ts
}

// countRows returns the number of rows of each app table.
func countRows(ctx context.Context, db *sql.DB, tables []string) (map[string]int64, int64, error) {
	m := map[string]int64{}
	var total int64
	for _, t := range tables {
		var n int64
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM "`+t+`"`).Scan(&n); err != nil {
			return nil, 0, err
		}
		m[t] = n
		total += n
	}
	return m, total, nil
}
