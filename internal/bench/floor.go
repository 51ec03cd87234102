package bench

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// floor lands the app rows of src in an empty copy of the app's tables at
// path: one transaction, one prepared INSERT per table, rows streamed from
// src as they are read. It is the least work any tool must do to move the
// rows from one device's tables into another's: read them, insert them,
// commit durably. It returns the number of rows written.
func floor(ctx context.Context, src *sql.DB, path string, tables []string, pageSize int) (int64, error) {
	if err := createApp(ctx, path, pageSize); err != nil {
		return 0, err
	}
	dst, err := sql.Open("sqlite", appDSN(path))
	if err != nil {
		return 0, err
	}
	defer dst.Close()
	dst.SetMaxOpenConns(1)
	tx, err := dst.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	var n int64
	for _, t := range tables {
		k, err := copyTable(ctx, src, tx, t)
		if err != nil {
			return 0, fmt.Errorf("floor: %s: %w", t, err)
		}
		n += k
	}
	return n, tx.Commit()
}

func copyTable(ctx context.Context, src *sql.DB, tx *sql.Tx, table string) (int64, error) {
	rows, err := src.QueryContext(ctx, `SELECT * FROM "`+table+`"`)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return 0, err
	}
	quoted := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = `"` + c + `"`
	}
	ins, err := tx.PrepareContext(ctx, fmt.Sprintf(`INSERT INTO "%s" (%s) VALUES (?%s)`,
		table, strings.Join(quoted, ", "), strings.Repeat(", ?", len(cols)-1)))
	if err != nil {
		return 0, err
	}
	defer ins.Close()
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var n int64
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return 0, err
		}
		if _, err := ins.ExecContext(ctx, vals...); err != nil {
			return 0, err
		}
		n++
	}
	return n, rows.Err()
}
