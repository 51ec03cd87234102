// Package store is the SQLite side of morango: the morango_* tables and their
// migrations, instance and database ids, counters, the triggers that track
// app changes, serialization (app rows → store) and deserialization (store →
// app rows), queuing and merging records.
//
// One SQLite file holds the application's own tables and the sync tables, so
// every step is a transaction together with the app's data. The app keeps
// writing its tables with plain SQL through its own connections; triggers
// record what changed.
package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/morango-sync/morango/ids"
	"github.com/morango-sync/morango/profile"
)

// ErrNotInitialized is returned by Open for a database without the sync
// tables.
var ErrNotInitialized = errors.New("database is not initialized for sync")

// HintError is an error with a line telling the user what to do.
type HintError struct {
	Err  error
	Help string
}

func (e *HintError) Error() string { return e.Err.Error() }
func (e *HintError) Unwrap() error { return e.Err }

// Hint returns what the user can do about the error.
func (e *HintError) Hint() string { return e.Help }

func withHint(err error, format string, args ...any) error {
	return &HintError{Err: err, Help: fmt.Sprintf(format, args...)}
}

// Options configure a database.
type Options struct {
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
	// SystemID and NodeID override the system facts the instance id is
	// computed from (as the MORANGO_SYSTEM_ID and MORANGO_NODE_ID
	// environment variables do).
	SystemID, NodeID string
}

// DB is an app database with the sync tables installed.
type DB struct {
	path    string
	w       *sql.DB // one connection; write transactions start IMMEDIATE
	r       *sql.DB // readers
	log     *slog.Logger
	opts    Options
	profile *profile.Profile
	schema  map[string]*tableInfo

	mu       sync.Mutex
	instance *Instance
}

var registerOnce sync.Once

// registerFunctions adds the SQL functions the store's statements use.
func registerFunctions() {
	registerOnce.Do(func() {
		sqlite.MustRegisterDeterministicScalarFunction("morango_sha2_uuid", 3,
			func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
				parts := make([]string, len(args))
				for i, a := range args {
					switch v := a.(type) {
					case string:
						parts[i] = v
					case []byte:
						parts[i] = string(v)
					case nil:
						return nil, nil
					default:
						parts[i] = fmt.Sprint(v)
					}
				}
				return ids.SHA2UUID(parts...), nil
			})
		sqlite.MustRegisterDeterministicScalarFunction("morango_valid_utf8", 1,
			func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
				switch v := args[0].(type) {
				case []byte:
					return utf8.Valid(v), nil
				case string:
					return utf8.ValidString(v), nil
				}
				return true, nil
			})
		// morango_unsyncable(limit, v...) is true if a value v is a
		// BLOB or text that is not valid UTF-8, or the BLOBs and texts
		// among them hold more than limit bytes: one call per row sifts
		// the rows whose values valueChecks must look at, column by
		// column. The arguments are views into SQLite's memory, not
		// copies, and are not kept.
		sqlite.MustRegisterFunction("morango_unsyncable", &sqlite.FunctionImpl{NArgs: -1, Deterministic: true, VolatileArgs: true,
			Scalar: func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
				if len(args) == 0 {
					return nil, errors.New("morango_unsyncable: no limit")
				}
				limit, ok := args[0].(int64)
				if !ok {
					return nil, errors.New("morango_unsyncable: the limit is not an integer")
				}
				var total int64
				for _, a := range args[1:] {
					switch v := a.(type) {
					case []byte:
						return true, nil
					case string:
						if !utf8.ValidString(v) {
							return true, nil
						}
						total += int64(len(v))
					}
				}
				return total > limit, nil
			}})
	})
}

func dsn(path string, immediate bool) string {
	q := []string{
		"_pragma=busy_timeout(30000)",
		"_pragma=journal_mode(WAL)",
		"_pragma=synchronous(FULL)",
		"_pragma=foreign_keys(0)",
	}
	if immediate {
		// Sorts of the writer (rebuilding an index after a bulk write)
		// use the other cores.
		q = append(q, "_txlock=immediate", fmt.Sprintf("_pragma=threads(%d)", sortThreads()))
	}
	return path + "?" + strings.Join(q, "&")
}

// sortThreads is the number of helper threads SQLite may start for a
// sort: one per core beyond the first, up to 3.
func sortThreads() int { return min(max(runtime.NumCPU()-1, 0), 3) }

func openHandles(path string) (w, r *sql.DB, err error) {
	registerFunctions()
	w, err = sql.Open("sqlite", dsn(path, true))
	if err != nil {
		return nil, nil, err
	}
	w.SetMaxOpenConns(1)
	r, err = sql.Open("sqlite", dsn(path, false))
	if err != nil {
		w.Close()
		return nil, nil, err
	}
	r.SetMaxOpenConns(4)
	return w, r, nil
}

// absPath returns a database's absolute path, symbolic links resolved. A
// folder is refused: it is never a database (the stick's folder given as
// --db, say).
func absPath(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("database path %s: %w", path, err)
	}
	// The file's real path: one file reached by two names (a symbolic
	// link to it, a path through a linked folder) is one database, which
	// keeps its instance whichever name opens it. A file not there yet has
	// its folder's links resolved.
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	} else if dir, err := filepath.EvalSymlinks(filepath.Dir(abs)); err == nil {
		abs = filepath.Join(dir, filepath.Base(abs))
	}
	if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
		return "", withHint(fmt.Errorf("database %s is a folder", path),
			"--db names the app's SQLite database file (for example school.sqlite3), not a folder")
	}
	return abs, nil
}

// Open opens a database on which Init has run.
func Open(ctx context.Context, path string, opts *Options) (*DB, error) {
	abs, err := absPath(path)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, withHint(fmt.Errorf("open database %s: %w", path, err),
			"check the path given with --db")
	}
	db, err := newDB(abs, opts)
	if err != nil {
		return nil, err
	}
	if err := db.load(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func newDB(abs string, opts *Options) (*DB, error) {
	w, r, err := openHandles(abs)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	db := &DB{path: abs, w: w, r: r}
	if opts != nil {
		db.opts = *opts
	}
	db.log = db.opts.Logger
	if db.log == nil {
		db.log = slog.New(slog.DiscardHandler)
	}
	return db, nil
}

// load reads the installed profile and checks it against the app's schema.
func (db *DB) load(ctx context.Context) error {
	v, err := schemaVersion(ctx, db.w)
	if notADatabase(err) {
		return withHint(fmt.Errorf("open database %s: %w", db.path, err), notADatabaseHint)
	}
	if err != nil {
		return fmt.Errorf("open database %s: %w", db.path, err)
	}
	if v == 0 {
		return withHint(fmt.Errorf("open database %s: %w", db.path, ErrNotInitialized),
			"run 'morango init --db %s --profile PROFILE.json' first", db.path)
	}
	if v > currentSchemaVersion {
		return newerSchema(db.path, v)
	}
	if v < currentSchemaVersion {
		if err := migrate(ctx, db.w); err != nil {
			return err
		}
	}
	if err := restoreIndexes(ctx, db.w); err != nil {
		return err
	}
	if err := restoreSyncTriggers(ctx, db.w); err != nil {
		return err
	}
	var def string
	err = db.w.QueryRowContext(ctx, `SELECT definition FROM morango_profile LIMIT 1`).Scan(&def)
	if errors.Is(err, sql.ErrNoRows) {
		return withHint(fmt.Errorf("open database %s: %w: no profile installed", db.path, ErrNotInitialized),
			"run 'morango init --db %s --profile PROFILE.json' first", db.path)
	}
	if err != nil {
		return fmt.Errorf("read installed profile: %w", err)
	}
	p, err := profile.Parse([]byte(def))
	if err != nil {
		return fmt.Errorf("installed profile: %w", err)
	}
	schema, err := readSchema(ctx, db.w)
	if err != nil {
		return err
	}
	if err := p.CheckSchema(schema.columns()); err != nil {
		return withHint(fmt.Errorf("the app's tables no longer match the installed profile: %w", err),
			"run 'morango init' again with a profile that matches the app's tables")
	}
	db.profile = p
	db.schema = schema
	if _, err := db.currentInstance(ctx); err != nil {
		return err
	}
	// A database that holds private keys is readable by its owner only.
	db.protectOnOpen(ctx)
	return nil
}

// newerSchema is the error for a database whose sync tables a newer
// morango has upgraded to version v.
func newerSchema(path string, v int) error {
	return withHint(fmt.Errorf("open database %s: sync tables are at version %d, this morango knows up to %d", path, v, currentSchemaVersion),
		"upgrade morango on this device")
}

// Close closes the database.
func (db *DB) Close() error {
	return errors.Join(db.w.Close(), db.r.Close())
}

// Path returns the database's absolute path.
func (db *DB) Path() string { return db.path }

// Profile returns the installed profile.
func (db *DB) Profile() *profile.Profile { return db.profile }

// SQL returns a handle for reading the database directly (tests, status).
func (db *DB) SQL() *sql.DB { return db.r }

// writeTx runs fn in a write transaction (BEGIN IMMEDIATE) and commits it if
// fn returns nil.
func (db *DB) writeTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin write transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	start := time.Now()
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	since("commit", start)
	return nil
}

// mmapSize is the most of the database file the writer maps into memory
// while it serializes: SQLite's own limit on 64-bit systems, 256 MiB of
// the smaller address space of 32-bit ones.
const mmapSize = 0x7fff0000*(strconv.IntSize/64) + (256<<20)*(1-strconv.IntSize/64)

// mapForReading has the writer connection read the database file through
// a memory map until the returned function is called. Serializing many
// rows reads app rows scattered over the file; through the map each read
// is a memory access instead of a system call and a copy into SQLite's
// page cache. Writes still go through the WAL. The mapped pages are the
// kernel's page cache of the file, which reading with system calls fills
// all the same; they count in the process's resident set while mapped.
// Where the map cannot be made, SQLite reads as usual.
func (db *DB) mapForReading(ctx context.Context) func() {
	if _, err := db.w.ExecContext(ctx, fmt.Sprintf(`PRAGMA mmap_size = %d`, mmapSize)); err != nil {
		db.log.Debug("no memory map", "err", err)
	}
	return func() {
		db.w.ExecContext(context.WithoutCancel(ctx), `PRAGMA mmap_size = 0`)
	}
}

// quote quotes an SQL identifier.
func quote(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// literal quotes an SQL string literal.
func literal(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// notADatabase reports whether err is SQLite finding that the file is not
// a database.
func notADatabase(err error) bool {
	return sqliteCode(err)&0xff == sqlite3.SQLITE_NOTADB
}

// sqliteCode is the extended result code of the SQLite error err wraps, 0
// if it wraps none.
func sqliteCode(err error) int {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return 0
	}
	return se.Code()
}

const notADatabaseHint = "--db names the app's SQLite database file; this file is not one (or is encrypted)"
