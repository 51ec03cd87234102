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
	empty  bool // Select found nothing: no query is needed
	// wide is set by Counts when the queue (not narrowed by Select) holds
	// a large part of the store: then its records are read by scanning the
	// store in id order, not through the partition index.
	wide bool
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
	if len(selectors) == 0 {
		// A peer that lacks nothing costs no query at all.
		q.empty = true
		return nil
	}
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

// wideShare: a queue that is not narrowed by Select and holds at least
// 1/wideShare of the store's rows reads them by scanning the store in
// rowid order rather than through the partition index: a scan reads each
// page once, the index one page per record. The rowid order is also the
// order in which the records reached this store: on a device that
// serialized them, by model and id, which compresses well and which an
// importer writes fastest, as its indexes are keyed by id.
const wideShare = 4

// filterSQL returns the condition selecting the filter's partitions, each
// record once (the prefixes are normalized), with its arguments. With plain
// false, the condition cannot use the partition index.
func (q *Queue) filterSQL(indexed bool) (string, []any) {
	col := "s.partition"
	if !indexed {
		col = "+s.partition"
	}
	var conds []string
	var args []any
	for _, p := range q.filter {
		c, a := rangeSQL(col, p)
		conds = append(conds, "("+c+")")
		args = append(args, a...)
	}
	if len(conds) == 0 {
		return "false", nil
	}
	return joinOr(conds), args
}

// query returns the FROM and WHERE clauses over the store aliased s that
// select the queue's records, each once, with their arguments.
func (q *Queue) query() (string, []any) {
	if q.queued {
		// The queue lists ids in order; the store is looked up by id.
		return `temp.morango_queue q CROSS JOIN morango_store s ON s.id = q.id`, nil
	}
	cond, args := q.filterSQL(!q.wide)
	return `morango_store s WHERE s.profile = ? AND (` + cond + `)`, append([]any{q.db.profile.Name}, args...)
}

// Counts returns the number of queued records per model and in all.
func (q *Queue) Counts(ctx context.Context) (map[string]int64, int64, error) {
	counts := map[string]int64{}
	var total int64
	if q.empty {
		return counts, 0, nil
	}
	var from string
	var args []any
	if q.queued {
		from, args = q.query()
	} else {
		// The partition index alone bounds the count from above (it does
		// not hold the profile). A queue that holds a large part of the
		// store is counted by scanning the store, a small one through the
		// index.
		cond, cargs := q.filterSQL(true)
		var bound, rows int64
		err := q.tx.QueryRowContext(ctx, `SELECT count(*) FROM morango_store s WHERE `+cond, cargs...).Scan(&bound)
		if err == nil {
			err = q.tx.QueryRowContext(ctx, `SELECT coalesce(max(rowid), 0) FROM morango_store`).Scan(&rows)
		}
		if err != nil {
			return nil, 0, fmt.Errorf("count queued records: %w", err)
		}
		q.wide = bound*wideShare >= rows && bound > 0
		cond, cargs = q.filterSQL(!q.wide)
		from = `morango_store s WHERE s.profile = ? AND (` + cond + `)`
		args = append([]any{q.db.profile.Name}, cargs...)
	}
	rows, err := q.tx.QueryContext(ctx, `SELECT s.model_name, count(*) FROM `+from+` GROUP BY s.model_name`, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("count queued records: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var m string
		var n int64
		if err := rows.Scan(&m, &n); err != nil {
			return nil, 0, err
		}
		counts[m] += n
		total += n
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("count queued records: %w", err)
	}
	return counts, total, nil
}

// Each calls fn for every queued record. The record is reused between
// calls: fn must copy what it keeps.
func (q *Queue) Each(ctx context.Context, fn func(*Record) error) error {
	if q.empty {
		return nil
	}
	from, args := q.query()
	rows, err := q.tx.QueryContext(ctx, `SELECT `+recordColumns("s")+` FROM `+from, args...)
	if err != nil {
		return fmt.Errorf("read queued records: %w", err)
	}
	defer rows.Close()
	var r Record
	for rows.Next() {
		if err := scanRecord(rows, &r); err != nil {
			return fmt.Errorf("read queued record: %w", err)
		}
		if err := fn(&r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read queued records: %w", err)
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
