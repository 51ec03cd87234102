package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/morango-sync/morango/ids"
)

// Instance identifies this database on this device: the writer of every
// version made here. Its id changes when the database moves to another
// device or path, so that two copies of a database never write under the
// same id.
type Instance struct {
	ID         string `json:"id"`
	DatabaseID string `json:"database_id"`
	Platform   string `json:"platform"`
	Hostname   string `json:"hostname"`
	SysVersion string `json:"sysversion"`
	NodeID     string `json:"node_id"`
	SystemID   string `json:"system_id"`
	DBPath     string `json:"db_path"`
	Counter    int64  `json:"counter"`
}

// Hash is the short name shown to users (the proquint of the id).
func (i *Instance) Hash() string { return ids.Proquint(i.ID) }

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

// systemID returns the salted hash of this machine's identity, as the
// original's get_0_5_system_id: MORANGO_SYSTEM_ID if it has at least three
// non-blank characters, else /etc/machine-id.
func (db *DB) systemID() string {
	if v := db.opts.SystemID; v != "" {
		return ids.SaltedHash(v)
	}
	if v := os.Getenv("MORANGO_SYSTEM_ID"); len(strings.TrimSpace(v)) >= 3 {
		return ids.SaltedHash(v)
	}
	for _, f := range []string{"/etc/machine-id", "/var/lib/dbus/machine-id"} {
		if b, err := os.ReadFile(f); err == nil {
			if v := strings.TrimSpace(string(b)); v != "" {
				return ids.SaltedHash(v)
			}
		}
	}
	return ""
}

// nodeID returns the salted hash of the first real network interface's MAC
// address, as the original's get_0_5_mac_address.
func (db *DB) nodeID() string {
	if v := db.opts.NodeID; v != "" {
		return ids.SaltedHash(v)
	}
	if v := os.Getenv("MORANGO_NODE_ID"); len(strings.TrimSpace(v)) >= 3 {
		return ids.SaltedHash(v)
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return ""
	}
	rank := func(name string) int {
		switch {
		case strings.HasPrefix(name, "eth") || strings.HasPrefix(name, "en"):
			return 0
		case strings.HasPrefix(name, "wl"):
			return 1
		case strings.HasPrefix(name, "e") || strings.HasPrefix(name, "w"):
			return 2
		}
		return 3
	}
	sort.Slice(ifs, func(a, b int) bool {
		ra, rb := rank(ifs[a].Name), rank(ifs[b].Name)
		if ra != rb {
			return ra < rb
		}
		return ifs[a].Name < ifs[b].Name
	})
	for _, it := range ifs {
		mac := it.HardwareAddr
		if len(mac) != 6 || mac[0]&2 != 0 {
			continue // absent or locally administered
		}
		return ids.SaltedHash(mac.String())
	}
	return ""
}

// currentInstance returns this database's instance on this device, creating
// a database id or instance row when needed. A database whose recorded path
// differs from where it is now opened and names another file, or none (a
// copied or moved file), gets a new database id and therefore a new
// instance id.
func (db *DB) currentInstance(ctx context.Context) (*Instance, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.instance != nil {
		return db.instance, nil
	}
	sysID, nodeID := db.systemID(), db.nodeID()
	// Mostly the recorded instance is this one, as it was: read it without
	// taking the write lock, which a long import holds (status would wait).
	if inst, ok, err := db.recordedInstance(ctx, sysID, nodeID); err != nil || ok {
		if ok {
			db.instance = inst
		}
		return inst, err
	}
	var inst Instance
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		dbID, err := currentDatabaseID(ctx, tx)
		if err != nil {
			return err
		}
		var prevPath string
		err = tx.QueryRowContext(ctx, `SELECT db_path FROM morango_instanceid WHERE current = 1 AND database_id = ? LIMIT 1`, dbID).Scan(&prevPath)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("read instance: %w", err)
		}
		if prevPath != "" && prevPath != db.path && !sameFile(prevPath, db.path) {
			db.log.Info("database moved or copied: new database id", "was", prevPath, "now", db.path)
			if dbID, err = newDatabaseID(ctx, tx); err != nil {
				return err
			}
		}
		inst, err = db.saveInstance(ctx, tx, dbID, sysID, nodeID)
		return err
	})
	if err != nil {
		return nil, err
	}
	db.instance = &inst
	return db.instance, nil
}

// recordedInstance returns the current instance as recorded, if it is the
// one saveInstance would make current now: recorded at this path, with
// these machine ids and this build's platform details. It only reads.
func (db *DB) recordedInstance(ctx context.Context, sysID, nodeID string) (*Instance, bool, error) {
	var in Instance
	err := db.r.QueryRowContext(ctx, `SELECT i.id, i.database_id, i.platform, i.hostname, i.sysversion, i.node_id, i.system_id, i.db_path, i.counter
		FROM morango_instanceid i JOIN morango_databaseid d ON d.id = i.database_id AND d.current = 1
		WHERE i.current = 1`).Scan(&in.ID, &in.DatabaseID, &in.Platform, &in.Hostname, &in.SysVersion, &in.NodeID, &in.SystemID, &in.DBPath, &in.Counter)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read instance: %w", err)
	}
	want := db.instanceHere(in.DatabaseID, sysID, nodeID)
	want.Counter = in.Counter
	if in != want {
		return nil, false, nil
	}
	return &in, true, nil
}

// instanceHere is the instance of database id dbID at this path on this
// machine, as saveInstance records it (its counter aside).
func (db *DB) instanceHere(dbID, sysID, nodeID string) Instance {
	host, _ := os.Hostname()
	return Instance{
		ID:         ids.SHA2UUID(dbID, sysID, nodeID),
		DatabaseID: dbID,
		Platform:   runtime.GOOS + "-" + runtime.GOARCH,
		Hostname:   host,
		SysVersion: runtime.Version(),
		NodeID:     nodeID,
		SystemID:   sysID,
		DBPath:     db.path,
	}
}

// saveInstance makes the instance of database id dbID on this device the
// current one, recording it if it is new, and returns it with its counter.
func (db *DB) saveInstance(ctx context.Context, tx *sql.Tx, dbID, sysID, nodeID string) (Instance, error) {
	inst := db.instanceHere(dbID, sysID, nodeID)
	if _, err := tx.ExecContext(ctx, `UPDATE morango_instanceid SET current = 0 WHERE current = 1 AND id <> ?`, inst.ID); err != nil {
		return Instance{}, fmt.Errorf("update instance: %w", err)
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO morango_instanceid (id, platform, hostname, sysversion, node_id, database_id, counter, current, db_path, system_id)
		VALUES (?, ?, ?, ?, ?, ?, 0, 1, ?, ?)
		ON CONFLICT (id) DO UPDATE SET current = 1, platform = excluded.platform, hostname = excluded.hostname,
		sysversion = excluded.sysversion, db_path = excluded.db_path`,
		inst.ID, inst.Platform, inst.Hostname, inst.SysVersion, inst.NodeID, inst.DatabaseID, inst.DBPath, inst.SystemID)
	if err != nil {
		return Instance{}, fmt.Errorf("save instance: %w", err)
	}
	err = tx.QueryRowContext(ctx, `SELECT counter FROM morango_instanceid WHERE id = ?`, inst.ID).Scan(&inst.Counter)
	return inst, err
}

// RenewIfOlder gives this database a new instance id when another device
// holds versions of its current instance up to claimed, a counter above
// its own: this file is older than the one that wrote them, restored from
// a backup. Its next counters would name versions the other devices hold
// already, so nothing it wrote would reach them, while the versions it
// lost would never come back. As a copied file does, it takes a new
// database id and so a new instance; its old instance's counters stay
// what it holds of them, so the devices send what it lost. It reports
// whether it did.
func (db *DB) RenewIfOlder(ctx context.Context, claimed int64) (bool, error) {
	in, err := db.Instance(ctx)
	if err != nil || claimed <= in.Counter {
		return false, err
	}
	// db.mu is not held across the transaction: CreateTransfer reads the
	// instance inside one, and the two would wait on each other. The
	// transaction checks again that the instance is current and behind.
	var inst Instance
	renewed := false
	err = db.writeTx(ctx, func(tx *sql.Tx) error {
		// Another handle may have renewed it, or written past claimed,
		// since: only the instance that is still current and behind goes.
		var behind bool
		err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM morango_instanceid WHERE id = ? AND current = 1 AND counter < ?)`,
			in.ID, claimed).Scan(&behind)
		if err != nil || !behind {
			return err
		}
		dbID, err := newDatabaseID(ctx, tx)
		if err != nil {
			return err
		}
		inst, err = db.saveInstance(ctx, tx, dbID, in.SystemID, in.NodeID)
		renewed = err == nil
		return err
	})
	if err != nil {
		return false, fmt.Errorf("new instance for a database older than its copies: %w", err)
	}
	if !renewed {
		return false, nil
	}
	db.log.Info("database older than versions other devices hold of it (restored from a backup?): new instance",
		"was", in.ID, "counter", in.Counter, "claimed", claimed, "now", inst.ID)
	db.mu.Lock()
	db.instance = &inst
	db.mu.Unlock()
	return true, nil
}

// FormerSelf reports whether id is an instance this database had before
// it was moved on this same device, or before it was renewed after a
// restore, which will never sync again (this one carries on its data): an
// earlier instance of the same system and node ids whose file is this very
// file (a drive mounted elsewhere and back, a renewed instance), or, with
// both ids known, whose file is gone. It returns where that file was. A
// file still there may be a copy in use, and an instance of other system
// or node ids may be a copy on another device (machines made from one
// image share a machine id): neither is reported; nor is an instance at
// another path when an id is not known here.
func (db *DB) FormerSelf(ctx context.Context, id string) (bool, string, error) {
	in, err := db.Instance(ctx)
	if err != nil || id == in.ID {
		return false, "", err
	}
	var path, system, node string
	err = db.r.QueryRowContext(ctx, `SELECT db_path, system_id, node_id FROM morango_instanceid WHERE id = ? AND current = 0`, id).Scan(&path, &system, &node)
	if errors.Is(err, sql.ErrNoRows) {
		return false, "", nil
	}
	if err != nil {
		return false, "", err
	}
	if path == "" || system != in.SystemID || node != in.NodeID {
		return false, "", nil
	}
	if path == db.path || sameFile(path, db.path) {
		return true, path, nil
	}
	if in.SystemID == "" || in.NodeID == "" {
		return false, "", nil
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		return false, "", nil
	}
	return true, path, nil
}

// DeviceName returns the name for people this device was given
// (SetDeviceName), or "".
func (db *DB) DeviceName(ctx context.Context) (string, error) {
	var name string
	err := db.r.QueryRowContext(ctx, `SELECT value FROM morango_setting WHERE key = 'device_name'`).Scan(&name)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read device name: %w", err)
	}
	return name, nil
}

// SetDeviceName keeps name as this device's name for people; later
// manifests carry it until another is given.
func (db *DB) SetDeviceName(ctx context.Context, name string) error {
	if cur, err := db.DeviceName(ctx); err != nil || cur == name {
		return err
	}
	return db.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO morango_setting (key, value) VALUES ('device_name', ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, name)
		if err != nil {
			return fmt.Errorf("save device name: %w", err)
		}
		return nil
	})
}

// EarlierIdentity reports whether id is an instance this database had
// before its current one, wherever its file was then, and returns that
// path. Unlike FormerSelf, it cannot tell a move from a copy: a copy of
// this file elsewhere may write under that instance still.
func (db *DB) EarlierIdentity(ctx context.Context, id string) (string, bool, error) {
	var path string
	err := db.r.QueryRowContext(ctx, `SELECT db_path FROM morango_instanceid WHERE id = ? AND current = 0`, id).Scan(&path)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read earlier instance: %w", err)
	}
	return path, true, nil
}

// EarlierInstances returns this database's earlier instances at this very
// file on this device, each with its counter: those of the same system and
// node ids it no longer writes under because it took a new instance here
// (RenewIfOlder, after a restore from a backup) or was moved away and
// back. What they wrote is this database's own, and what it holds of them
// stops at their counters. The current instance is not among them.
func (db *DB) EarlierInstances(ctx context.Context) (map[string]int64, error) {
	in, err := db.Instance(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := db.r.QueryContext(ctx, `SELECT id, counter FROM morango_instanceid
		WHERE current = 0 AND id <> ? AND db_path = ? AND system_id = ? AND node_id = ?`, in.ID, db.path, in.SystemID, in.NodeID)
	if err != nil {
		return nil, fmt.Errorf("read earlier instances: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var id string
		var c int64
		if err := rows.Scan(&id, &c); err != nil {
			return nil, fmt.Errorf("read earlier instances: %w", err)
		}
		out[id] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read earlier instances: %w", err)
	}
	return out, nil
}

// Instance returns this database's current instance. Another handle of the
// file (another process) may have given it a new one (RenewIfOlder): the
// current row is read each time.
func (db *DB) Instance(ctx context.Context) (*Instance, error) {
	in, err := db.currentInstance(ctx)
	if err != nil {
		return nil, err
	}
	var id string
	var counter int64
	if err := db.r.QueryRowContext(ctx, `SELECT id, counter FROM morango_instanceid WHERE current = 1`).Scan(&id, &counter); err != nil {
		return nil, fmt.Errorf("read instance counter: %w", err)
	}
	if id != in.ID {
		if in, err = db.reloadInstance(ctx, id); err != nil {
			return nil, err
		}
	}
	c := *in
	c.Counter = counter
	return &c, nil
}

// instanceID returns the id of this handle's instance, as it last read it.
func (db *DB) instanceID() string {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.instance == nil {
		return ""
	}
	return db.instance.ID
}

// reloadInstance makes instance id, which another handle made current, this
// handle's instance.
func (db *DB) reloadInstance(ctx context.Context, id string) (*Instance, error) {
	in := &Instance{ID: id}
	err := db.r.QueryRowContext(ctx, `SELECT platform, hostname, sysversion, node_id, database_id, counter, db_path, system_id
		FROM morango_instanceid WHERE id = ?`, id).Scan(&in.Platform, &in.Hostname, &in.SysVersion, &in.NodeID,
		&in.DatabaseID, &in.Counter, &in.DBPath, &in.SystemID)
	if err != nil {
		return nil, fmt.Errorf("read instance %s: %w", id, err)
	}
	db.mu.Lock()
	db.instance = in
	db.mu.Unlock()
	return in, nil
}

func currentDatabaseID(ctx context.Context, tx *sql.Tx) (string, error) {
	var id string
	err := tx.QueryRowContext(ctx, `SELECT id FROM morango_databaseid WHERE current = 1 ORDER BY date_generated DESC LIMIT 1`).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return newDatabaseID(ctx, tx)
	}
	if err != nil {
		return "", fmt.Errorf("read database id: %w", err)
	}
	return id, nil
}

func newDatabaseID(ctx context.Context, tx *sql.Tx) (string, error) {
	id := ids.Random()
	if _, err := tx.ExecContext(ctx, `UPDATE morango_databaseid SET current = 0`); err != nil {
		return "", fmt.Errorf("new database id: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO morango_databaseid (id, current, date_generated) VALUES (?, 1, ?)`, id, now()); err != nil {
		return "", fmt.Errorf("new database id: %w", err)
	}
	return id, nil
}

// nextCounter increments the counter of this database's current instance
// inside tx and returns the instance and the counter. The current instance
// is read in tx, not taken from this handle: another handle may have
// renewed it (RenewIfOlder), and no version may be written under an
// instance that is no longer current.
func (db *DB) nextCounter(ctx context.Context, tx *sql.Tx) (string, int64, error) {
	var id string
	var c int64
	err := tx.QueryRowContext(ctx, `UPDATE morango_instanceid SET counter = counter + 1 WHERE current = 1 RETURNING id, counter`).Scan(&id, &c)
	if err != nil {
		return "", 0, fmt.Errorf("increment counter: %w", err)
	}
	return id, c, nil
}

// sameFile reports whether the recorded path a names the file at the
// resolved path b through symbolic links: a path recorded before links
// were resolved (see absPath). A hard link or a second mount point of the
// file is not the same file here: another name of it could, after a copy
// is put in its place, be where a copy lives, which must not keep this
// database's instance (and SQLite keeps a -wal file per name, so a file
// must be opened under one name only).
func sameFile(a, b string) bool {
	r, err := filepath.EvalSymlinks(a)
	return err == nil && r == b
}
