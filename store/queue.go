package store

import (
	"context"
	"database/sql"
	"fmt"
	"sort"

	"github.com/morango-sync/morango/fsic"
)

// Selector selects the records under Partition whose history holds a
// version by Instance with a counter above After: what a peer that has
// Instance's versions up to After lacks.
type Selector struct {
	Partition string
	Instance  string
	After     int64
}

// Queue is a consistent snapshot of the records to send to a peer. It holds
// a read transaction until Close.
type Queue struct {
	db     *DB
	conn   *sql.Conn
	tx     *sql.Tx
	filter []string
	queued bool // records are listed in temp.morango_queue
}

// OpenQueue opens a snapshot of the store for sending the records under
// filter. Until Select is called, the queue holds every record under the
// filter. The counters the sender claims must come from the same snapshot
// (Queue.MaxCounters), so that a receiver never claims what it was not sent.
func (db *DB) OpenQueue(ctx context.Context, filter []string) (*Queue, error) {
	conn, err := db.r.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("queue: %w", err)
	}
	return &Queue{db: db, conn: conn, tx: tx, filter: normalizeFilter(filter)}, nil
}

// Close ends the queue's read transaction.
func (q *Queue) Close() error {
	if q.tx == nil {
		return nil
	}
	q.tx.Rollback()
	err := q.conn.Close()
	q.tx = nil
	return err
}

// Select narrows the queue to the records any selector matches, found
// through the record-max-counter index, so that a peer that lacks little
// costs little.
func (q *Queue) Select(ctx context.Context, selectors []Selector) error {
	q.queued = true
	for _, stmt := range []string{
		`CREATE TEMP TABLE IF NOT EXISTS morango_queue (id TEXT PRIMARY KEY) WITHOUT ROWID`,
		`DELETE FROM temp.morango_queue`,
	} {
		if _, err := q.tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("queue: %w", err)
		}
	}
	sels := append([]Selector(nil), selectors...)
	sort.Slice(sels, func(a, b int) bool {
		if sels[a].Instance != sels[b].Instance {
			return sels[a].Instance < sels[b].Instance
		}
		return sels[a].Partition < sels[b].Partition
	})
	for _, s := range sels {
		cond, args := rangeSQL("s.partition", s.Partition)
		args = append([]any{s.Instance, s.After, q.db.profile.Name}, args...)
		_, err := q.tx.ExecContext(ctx, `INSERT INTO temp.morango_queue (id)
			SELECT r.store_model_id FROM morango_recordmaxcounter r JOIN morango_store s ON s.id = r.store_model_id
			WHERE r.instance_id = ? AND r.counter > ? AND s.profile = ? AND `+cond+` ON CONFLICT DO NOTHING`, args...)
		if err != nil {
			return fmt.Errorf("queue records of %s under %q: %w", s.Instance, s.Partition, err)
		}
	}
	// Selectors come from a diff under the filter; keep only what the
	// filter covers all the same.
	var conds []string
	var args []any
	for _, p := range q.filter {
		c, a := rangeSQL("s.partition", p)
		conds = append(conds, "("+c+")")
		args = append(args, a...)
	}
	if len(conds) > 0 {
		_, err := q.tx.ExecContext(ctx, `DELETE FROM temp.morango_queue WHERE id NOT IN (SELECT s.id FROM morango_store s
			WHERE s.id IN (SELECT id FROM temp.morango_queue) AND (`+joinOr(conds)+`))`, args...)
		if err != nil {
			return fmt.Errorf("queue: %w", err)
		}
	}
	return nil
}

func joinOr(conds []string) string {
	s := ""
	for i, c := range conds {
		if i > 0 {
			s += " OR "
		}
		s += c
	}
	return s
}

// parts returns the queries (FROM and WHERE clauses over the store aliased
// s) that together select the queue's records, each record once.
func (q *Queue) parts() []struct {
	from string
	args []any
} {
	type part = struct {
		from string
		args []any
	}
	if q.queued {
		return []part{{`temp.morango_queue q JOIN morango_store s ON s.id = q.id`, nil}}
	}
	var ps []part
	for _, p := range q.filter {
		cond, args := rangeSQL("s.partition", p)
		ps = append(ps, part{`morango_store s WHERE s.profile = ? AND ` + cond, append([]any{q.db.profile.Name}, args...)})
	}
	return ps
}

// Counts returns the number of queued records per model and in all.
func (q *Queue) Counts(ctx context.Context) (map[string]int64, int64, error) {
	counts := map[string]int64{}
	var total int64
	for _, p := range q.parts() {
		rows, err := q.tx.QueryContext(ctx, `SELECT s.model_name, count(*) FROM `+p.from+` GROUP BY s.model_name`, p.args...)
		if err != nil {
			return nil, 0, fmt.Errorf("count queued records: %w", err)
		}
		for rows.Next() {
			var m string
			var n int64
			if err := rows.Scan(&m, &n); err != nil {
				rows.Close()
				return nil, 0, err
			}
			counts[m] += n
			total += n
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, 0, err
		}
	}
	return counts, total, nil
}

// Each calls fn for every queued record. The record is reused between
// calls: fn must copy what it keeps.
func (q *Queue) Each(ctx context.Context, fn func(*Record) error) error {
	var r Record
	for _, p := range q.parts() {
		rows, err := q.tx.QueryContext(ctx, `SELECT `+recordColumns("s")+` FROM `+p.from, p.args...)
		if err != nil {
			return fmt.Errorf("read queued records: %w", err)
		}
		for rows.Next() {
			if err := scanRecord(rows, &r); err != nil {
				rows.Close()
				return fmt.Errorf("read queued record: %w", err)
			}
			if err := fn(&r); err != nil {
				rows.Close()
				return err
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read queued records: %w", err)
		}
	}
	return nil
}

// MaxCounters returns the database-max counters of the queue's snapshot.
func (q *Queue) MaxCounters(ctx context.Context) ([]fsic.MaxCounter, error) {
	return maxCounters(ctx, q.tx)
}

// MaxCounters returns the database-max counters: what this database holds.
func (db *DB) MaxCounters(ctx context.Context) ([]fsic.MaxCounter, error) {
	return maxCounters(ctx, db.r)
}

func maxCounters(ctx context.Context, q execer) ([]fsic.MaxCounter, error) {
	rows, err := q.QueryContext(ctx, `SELECT instance_id, partition, counter FROM morango_databasemaxcounter`)
	if err != nil {
		return nil, fmt.Errorf("read database-max counters: %w", err)
	}
	defer rows.Close()
	var l []fsic.MaxCounter
	for rows.Next() {
		var c fsic.MaxCounter
		if err := rows.Scan(&c.Instance, &c.Partition, &c.Counter); err != nil {
			return nil, err
		}
		l = append(l, c)
	}
	return l, rows.Err()
}

// FSIC returns what this database holds under filter.
func (db *DB) FSIC(ctx context.Context, filter []string) (fsic.V2, error) {
	rows, err := db.MaxCounters(ctx)
	if err != nil {
		return fsic.V2{}, err
	}
	return fsic.Calculate(rows, filter, nil), nil
}
