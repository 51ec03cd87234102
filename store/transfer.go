package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/morango-sync/morango/ids"
)

// Transfer is a transfer-session row: one transfer of records in one
// direction, and the stage it has reached.
type Transfer struct {
	ID                  string
	Push                bool // records leave this device
	Filter              []string
	Kind                string // connection kind: "disk"
	Path                string // the bundle file, for disk transfers
	SHA256              string
	Stage               string
	Status              string
	Total               int64
	Done                int64
	Bytes               int64
	Error               string
	Active              bool
	LocalFSIC, PeerFSIC string
}

// CreateTransfer records a new transfer session (and its sync session).
func (db *DB) CreateTransfer(ctx context.Context, t *Transfer) error {
	if t.ID == "" {
		t.ID = ids.Random()
	}
	syncID := ids.Random()
	ts := now()
	return db.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO morango_syncsession (id, start_timestamp, last_activity_timestamp, active,
			is_server, profile, connection_kind, connection_path, client_instance_id, process_id)
			VALUES (?, ?, ?, 1, 0, ?, ?, ?, ?, ?)`, syncID, ts, ts, db.profile.Name, t.Kind, t.Path, db.instanceID(), os.Getpid())
		if err != nil {
			return fmt.Errorf("create sync session: %w", err)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO morango_transfersession (id, sync_session_id, filter, push, active,
			start_timestamp, last_activity_timestamp, client_fsic, server_fsic, transfer_stage, transfer_stage_status,
			bundle_path, bundle_sha256) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?)`,
			t.ID, syncID, strings.Join(t.Filter, "\n"), t.Push, ts, ts, nonEmpty(t.LocalFSIC), nonEmpty(t.PeerFSIC),
			t.Stage, t.Status, t.Path, t.SHA256)
		if err != nil {
			return fmt.Errorf("create transfer session: %w", err)
		}
		t.Active = true
		return nil
	})
}

func nonEmpty(s string) string {
	if s == "" {
		return "{}"
	}
	return s
}

// UpdateTransfer saves a transfer's stage, status, counts and error, and
// marks it inactive once it has been cleaned up or has failed for good.
func (db *DB) UpdateTransfer(ctx context.Context, t *Transfer) error {
	return db.writeTx(ctx, func(tx *sql.Tx) error { return updateTransfer(ctx, tx, t) })
}

// UpdateTransfer saves a transfer's state inside the import's transaction.
func (im *Import) UpdateTransfer(ctx context.Context, t *Transfer) error {
	return updateTransfer(ctx, im.tx, t)
}

func updateTransfer(ctx context.Context, tx *sql.Tx, t *Transfer) error {
	ts := now()
	{
		_, err := tx.ExecContext(ctx, `UPDATE morango_transfersession SET transfer_stage = ?, transfer_stage_status = ?,
			records_total = ?, records_transferred = ?, bytes_sent = CASE WHEN push THEN ? ELSE bytes_sent END,
			bytes_received = CASE WHEN push THEN bytes_received ELSE ? END, error = ?, active = ?,
			last_activity_timestamp = ?, bundle_sha256 = ?, client_fsic = ?, server_fsic = ? WHERE id = ?`,
			t.Stage, t.Status, t.Total, t.Done, t.Bytes, t.Bytes, t.Error, t.Active, ts, t.SHA256,
			nonEmpty(t.LocalFSIC), nonEmpty(t.PeerFSIC), t.ID)
		if err != nil {
			return fmt.Errorf("update transfer session: %w", err)
		}
		_, err = tx.ExecContext(ctx, `UPDATE morango_syncsession SET last_activity_timestamp = ?, active = ?
			WHERE id = (SELECT sync_session_id FROM morango_transfersession WHERE id = ?)`, ts, t.Active, t.ID)
		return err
	}
}

// ActiveTransfer returns the active, unfinished transfer of the bundle with
// the given hash, if an earlier run was interrupted.
func (db *DB) ActiveTransfer(ctx context.Context, sha256 string) (*Transfer, error) {
	return db.readTransfer(ctx, `bundle_sha256 = ? AND active ORDER BY start_timestamp DESC LIMIT 1`, sha256)
}

// Transfer returns the transfer session id as this database recorded it
// (the stage it reached), or nil if it recorded none.
func (db *DB) Transfer(ctx context.Context, id string) (*Transfer, error) {
	return db.readTransfer(ctx, `id = ?`, id)
}

// readTransfer reads the transfer session that where (with arg) selects,
// or nil if there is none.
func (db *DB) readTransfer(ctx context.Context, where string, arg string) (*Transfer, error) {
	t := &Transfer{}
	var filter string
	var total sql.NullInt64
	err := db.r.QueryRowContext(ctx, `SELECT id, push, filter, bundle_path, bundle_sha256, coalesce(transfer_stage, ''),
		coalesce(transfer_stage_status, ''), records_total, records_transferred, error, active
		FROM morango_transfersession WHERE `+where, arg).Scan(
		&t.ID, &t.Push, &filter, &t.Path, &t.SHA256, &t.Stage, &t.Status, &total, &t.Done, &t.Error, &t.Active)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read transfer session: %w", err)
	}
	t.Filter = strings.Split(filter, "\n")
	t.Total = total.Int64
	return t, nil
}
