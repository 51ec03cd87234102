package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/morango-sync/morango/bundle"
	"github.com/morango-sync/morango/certs"
	"github.com/morango-sync/morango/ids"
	"github.com/morango-sync/morango/merge"
	"github.com/morango-sync/morango/profile"
)

// SerializeResult says what a serialization did.
type SerializeResult struct {
	// Counter is the instance counter of the new versions (0 when nothing
	// was dirty and no counter was used).
	Counter     int64 `json:"counter"`
	Created     int64 `json:"created"`
	Updated     int64 `json:"updated"`
	Deleted     int64 `json:"deleted"`
	HardDeleted int64 `json:"hard_deleted"`
	// Failed counts app rows that could not be serialized; their reasons
	// are in Status.
	Failed int64 `json:"failed"`
}

// Versions is the number of new versions.
func (r SerializeResult) Versions() int64 { return r.Created + r.Updated + r.Deleted + r.HardDeleted }

// Serialize turns the app's changes since the last serialization into new
// versions in the store: new rows get a store row, changed rows a new
// version, deleted rows a deleted version, hard-deleted rows are erased.
// Each new version is stamped with this instance and a fresh counter; the
// record's history and this instance's database-max counter are raised to
// it.
//
// It writes in transactions of at most SerializeChunk changed rows, each
// with a counter of its own, so that an app writing through its own
// connection never waits long for the write lock, however many rows
// changed. A change the app makes meanwhile is serialized by a later
// transaction, or by the next serialization.
func (db *DB) Serialize(ctx context.Context) (SerializeResult, error) {
	var total SerializeResult
	// A serialization of more rows than a transaction takes reads the
	// database through a memory map (see mapForReading): the app rows are
	// read in id order, seldom the order in which they lie in the file,
	// one page read per row.
	many, err := db.dirtyMoreThan(ctx, SerializeChunk)
	if err != nil {
		return total, err
	}
	if many {
		defer db.mapForReading(ctx)()
	}
	// A first serialization of many rows drops the store's partition
	// index in its first transaction and rebuilds it in its last (see
	// serializer.bulk); if it stops in between, the next Open rebuilds it.
	st := chunkState{budget: SerializeChunk}
	for {
		var res SerializeResult
		var more bool
		err := db.writeTx(ctx, func(tx *sql.Tx) error {
			var err error
			res, more, err = db.serializeSome(ctx, tx, &st)
			return err
		})
		if err != nil {
			if st.dropped != nil {
				// Best effort, even when ctx was cancelled; Open rebuilds
				// the indexes otherwise.
				wctx := context.WithoutCancel(ctx)
				db.writeTx(wctx, func(tx *sql.Tx) error { return rebuildIndexes(wctx, tx, st.dropped) })
			}
			return total, err
		}
		st.dropped = st.next
		total.Created += res.Created
		total.Updated += res.Updated
		total.Deleted += res.Deleted
		total.HardDeleted += res.HardDeleted
		total.Failed = res.Failed
		if res.Counter != 0 {
			total.Counter = res.Counter
		}
		if !more {
			return total, nil
		}
	}
}

// chunkState carries a serialization from one transaction to the next.
type chunkState struct {
	budget  int64    // changed rows per transaction; 0: no limit
	dropped []string // indexes dropped by an earlier transaction, to rebuild in the last
	next    []string // dropped after this transaction commits
}

// SerializeChunk is the most changed rows Serialize writes in one
// transaction: about a second of work on a small machine, well within the
// busy timeout apps commonly set (5 s).
var SerializeChunk int64 = 20000

// SerializeFirst serializes the app's changes with Serialize if they are
// more than one transaction of it holds, and reports whether it did. An
// operation that must serialize inside a long write transaction of its own
// (an import) calls it first, so that the app is not kept waiting for the
// write lock while many changes are serialized; fewer changes are left to
// that transaction, which serializes them with everything else it does.
func (db *DB) SerializeFirst(ctx context.Context) (bool, error) {
	many, err := db.dirtyMoreThan(ctx, SerializeChunk)
	if err != nil || !many {
		return false, err
	}
	_, err = db.Serialize(ctx)
	return err == nil, err
}

// dirtyMoreThan reports whether more than n app rows wait to be
// serialized.
func (db *DB) dirtyMoreThan(ctx context.Context, n int64) (bool, error) {
	var k int64
	err := db.r.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM morango_dirty WHERE error = '' LIMIT ?)`, n+1).Scan(&k)
	if err != nil {
		return false, fmt.Errorf("serialize: %w", err)
	}
	return k > n, nil
}

// serialize serializes every change in tx.
func (db *DB) serialize(ctx context.Context, tx *sql.Tx) (SerializeResult, error) {
	res, _, err := db.serializeSome(ctx, tx, &chunkState{})
	return res, err
}

// serializeSome serializes, in tx, the changes of at most st.budget
// changed rows (0: all of them), and says whether changes are left. The
// indexes a bulk serialization drops are rebuilt by the transaction that
// leaves no change: until then they are in st.next.
func (db *DB) serializeSome(ctx context.Context, tx *sql.Tx, st *chunkState) (res SerializeResult, more bool, err error) {
	var pending bool
	err = tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM morango_dirty WHERE error = '')
		OR EXISTS (SELECT 1 FROM morango_deletedmodels) OR EXISTS (`+erasable+`)`).Scan(&pending)
	if err != nil {
		return res, false, fmt.Errorf("serialize: %w", err)
	}
	if !pending {
		if err := rebuildIndexes(ctx, tx, st.dropped); err != nil {
			return res, false, err
		}
		st.next = nil
		err = tx.QueryRowContext(ctx, `SELECT count(*) FROM morango_dirty`).Scan(&res.Failed)
		return res, false, err
	}
	me, c, err := db.nextCounter(ctx, tx)
	if err != nil {
		return res, false, err
	}
	res.Counter = c
	s := serializer{db: db, tx: tx, me: me, c: c, budget: st.budget, rebuild: st.dropped}
	if s.each, s.scoped, err = db.writeScopes(ctx); err != nil {
		return res, false, fmt.Errorf("serialize: %w", err)
	}
	for _, f := range s.each {
		s.write = append(s.write, f...)
	}
	steps := []string{
		`CREATE TEMP TABLE IF NOT EXISTS morango_versioned (id TEXT PRIMARY KEY) WITHOUT ROWID`,
		`DELETE FROM temp.morango_versioned`,
		`CREATE TEMP TABLE IF NOT EXISTS morango_work (id TEXT PRIMARY KEY, stored INTEGER NOT NULL) WITHOUT ROWID`,
		`CREATE TEMP TABLE IF NOT EXISTS morango_failed (id TEXT PRIMARY KEY, error TEXT NOT NULL) WITHOUT ROWID`,
		// Deletions the app recorded explicitly become ordinary changes.
		`INSERT INTO morango_dirty (model, id) SELECT s.model_name, d.id FROM morango_deletedmodels d
			JOIN morango_store s ON s.id = d.id WHERE true ON CONFLICT (model, id) DO UPDATE SET error = ''`,
		`DELETE FROM morango_deletedmodels`,
	}
	if err := s.exec(ctx, steps...); err != nil {
		return res, false, err
	}
	if err := s.hardDelete(ctx, &res); err != nil {
		return res, false, err
	}
	// Models go parents first; a model the budget cuts short is continued,
	// from its first model on, by the next call.
	for _, m := range db.profile.Ordered() {
		if err := s.model(ctx, m, &res); err != nil {
			return res, false, fmt.Errorf("serialize %s: %w", m.Name, err)
		}
		if s.full {
			more = true
			break
		}
	}
	st.next = s.rebuild
	if !more {
		if err := rebuildIndexes(ctx, tx, s.rebuild); err != nil {
			return res, false, err
		}
		st.next = nil
	}
	// Every new version enters its record's history.
	err = s.exec(ctx,
		fmt.Sprintf(`INSERT INTO morango_recordmaxcounter (store_model_id, instance_id, counter)
			SELECT id, %s, %d FROM temp.morango_versioned WHERE true
			ON CONFLICT (store_model_id, instance_id) DO UPDATE SET counter = max(counter, excluded.counter)`, literal(me), c),
		fmt.Sprintf(`INSERT INTO morango_databasemaxcounter (instance_id, partition, counter) VALUES (%s, '', %d)
			ON CONFLICT (instance_id, partition) DO UPDATE SET counter = max(counter, excluded.counter)`, literal(me), c),
		`DELETE FROM temp.morango_versioned`,
		`DELETE FROM temp.morango_work`,
	)
	if err != nil || more {
		// Rows left for the next transaction are not failures: only the
		// last one counts those.
		return res, more, err
	}
	err = tx.QueryRowContext(ctx, `SELECT count(*) FROM morango_dirty`).Scan(&res.Failed)
	return res, false, err
}

type serializer struct {
	db      *DB
	tx      *sql.Tx
	me      string
	c       int64
	rebuild []string // indexes dropped for a bulk serialization
	budget  int64    // changed rows left to take in this transaction; 0: no limit
	full    bool     // the budget is spent
	// write is what this device may write, when scoped (it holds a
	// certificate's key). A change outside it never becomes a version:
	// no other device would ever get that version, which would compete
	// on this device alone with the versions of those that may write
	// the record, and the devices would end with different data. It
	// waits in morango_dirty with the reason; a version from a device
	// that may write the record replaces the app row (and takes the
	// change off the list), and a new certificate has it tried again.
	write  certs.Filter
	scoped bool
	// each is what the device may write with each of its certificates,
	// whose union is write.
	each []certs.Filter
}

// outsideScope is an SQL condition: the partition expression part lies
// outside what this device may write ("" when it holds no certificate).
func (s *serializer) outsideScope(part string) string {
	if !s.scoped {
		return ""
	}
	return "NOT " + partitionIn(s.write, part)
}

// apartScope is an SQL condition: no certificate of this device may write
// both partition expressions a and b ("" when it holds no certificate). A
// bundle is signed by one certificate, and importers check a record's
// partition and the one its data gives against that one's write scope.
func (s *serializer) apartScope(a, b string) string {
	if !s.scoped {
		return ""
	}
	var or []string
	for _, f := range s.each {
		or = append(or, partitionIn(f, a)+" AND "+partitionIn(f, b))
	}
	if len(or) == 0 {
		return "true"
	}
	return "NOT ((" + strings.Join(or, ") OR (") + "))"
}

// outsidePrefix starts the reason a change outside this device's write
// scope waits.
const outsidePrefix = "this device may not write partition "

// outsideReason is the SQL text of the reason a change outside this
// device's write scope waits: part is the partition, where the text
// where says it comes from ("" for the record's own).
func outsideReason(part, where string) string {
	return fmt.Sprintf(`%s || %s || %s`, literal(outsidePrefix), part,
		literal(where+": the change stays on this device, and the next version from a device that may write it replaces it"))
}

// bulk drops the store's indexes keyed by partition, once, when a model
// brings at least as many new records as the store holds (see
// Import.Expect); serialize rebuilds them at its end.
func (s *serializer) bulk(ctx context.Context, newRecords int64) error {
	if s.rebuild != nil || newRecords < minBulk {
		return nil
	}
	var err error
	s.rebuild, err = dropForBulk(ctx, s.tx, newRecords)
	return err
}

func (s *serializer) exec(ctx context.Context, stmts ...string) error {
	for _, q := range stmts {
		start := time.Now()
		_, err := s.tx.ExecContext(ctx, q)
		since(q, start)
		if err != nil {
			return fmt.Errorf("%w (in %.120s)", err, q)
		}
	}
	return nil
}

func (s *serializer) count(ctx context.Context, q string, args ...any) (int64, error) {
	start := time.Now()
	r, err := s.tx.ExecContext(ctx, q, args...)
	since(q, start)
	if err != nil {
		return 0, fmt.Errorf("%w (in %.120s)", err, q)
	}
	return r.RowsAffected()
}

// lsb sets a new version's writer and counter and clears the fields that
// belong to incoming versions.
func (s *serializer) lsb() string {
	return fmt.Sprintf(`last_saved_instance = %s, last_saved_counter = %d, conflicting_serialized_data = '',
		dirty_bit = 0, deserialization_error = '', last_transfer_session_id = NULL`, literal(s.me), s.c)
}

// sqlCheck is a condition on an app row aliased t that keeps it out of the
// store, and the SQL text of the reason.
type sqlCheck struct{ cond, msg string }

// valueChecks returns the checks that the synced columns cols of the row
// aliased t hold values a record's data (JSON) carries exactly: no BLOB
// (SQLite's JSON functions refuse one, or read it as JSONB and write JSON
// text in its place), no text that is not valid UTF-8 (a bundle's
// strings are UTF-8: the record could not be exported), and no more data
// than maxRecordData.
func valueChecks(cols []string) []sqlCheck {
	var checks []sqlCheck
	for _, c := range cols {
		if c == "id" {
			continue
		}
		checks = append(checks, sqlCheck{fmt.Sprintf(`typeof(t.%s) = 'blob'`, quote(c)),
			literal(fmt.Sprintf("column %q holds a BLOB, which a record's data (JSON) cannot hold; store it as text", c))})
	}
	for _, c := range cols {
		if c == "id" {
			continue
		}
		// The text as bytes: a function's text argument would end at a NUL.
		checks = append(checks, sqlCheck{fmt.Sprintf(`typeof(t.%[1]s) = 'text' AND NOT morango_valid_utf8(CAST(t.%[1]s AS BLOB))`, quote(c)),
			literal(fmt.Sprintf("column %q holds text that is not valid UTF-8, which a bundle cannot carry; write it as UTF-8", c))})
	}
	// The data is built only for a row whose values may make that much
	// (JSON spells a byte in at most 6), and without failing on a BLOB.
	var sum []string
	for _, c := range cols {
		sum = append(sum, fmt.Sprintf("coalesce(octet_length(t.%s), 0)", quote(c)))
	}
	checks = append(checks, sqlCheck{fmt.Sprintf(`%s > %d AND octet_length(%s) > %d`,
		strings.Join(sum, " + "), maxRecordData/8, jsonLoggedSQL("t", cols), maxRecordData),
		literal(fmt.Sprintf("its data is larger than %d MiB, the most a bundle carries in one record", maxRecordData>>20))})

	// The checks above cost a function call and several tests per column
	// and row; morango_unsyncable makes one call per row (per 99 columns)
	// and lets through only rows that may fail one of them. Its limit on
	// the bytes of the row's texts and BLOBs is one any row whose data
	// (JSON) is larger than maxRecordData passes: the data spells each
	// byte in at most 6 and each key, number and separator in a bounded
	// number.
	var keys int64
	for _, c := range cols {
		keys += 6*int64(len(c)) + 40
	}
	limit := min(int64(maxRecordData/8), (maxRecordData-keys)/6)
	// Each call takes the limit and up to maxFunctionArgs-1 columns; with
	// several, one of them holds at least its share of the bytes.
	per := maxFunctionArgs - 1
	limit /= int64((len(cols) + per - 1) / per)
	var gates []string
	for start := 0; start < len(cols); start += per {
		var args []string
		for _, c := range cols[start:min(start+per, len(cols))] {
			args = append(args, columnValue("t", c))
		}
		gates = append(gates, fmt.Sprintf("morango_unsyncable(%d, %s)", limit, strings.Join(args, ", ")))
	}
	var conds, cases []string
	for _, ch := range checks {
		conds = append(conds, "coalesce("+ch.cond+", false)")
		cases = append(cases, " WHEN "+ch.cond+" THEN "+ch.msg)
	}
	return []sqlCheck{{
		// CASE, not AND: SQLite computes both sides of an AND whose value
		// it needs (checkSQL takes each check's value with coalesce).
		cond: fmt.Sprintf("CASE WHEN %s THEN %s ELSE false END", strings.Join(gates, " OR "), strings.Join(conds, " OR ")),
		msg:  "CASE" + strings.Join(cases, "") + " END",
	}}
}

// maxRecordData bounds a record's data (its JSON), so that the record
// fits in a bundle's chunk with its other fields (bundle.MaxChunkSize
// bounds an encoded record).
const maxRecordData = bundle.MaxChunkSize - 1<<20

// checkSQL returns a CASE's WHEN clauses giving the message of the first
// check that holds, and the condition that any holds.
func checkSQL(checks []sqlCheck) (cases, fails string) {
	var c, f strings.Builder
	for i, ch := range checks {
		fmt.Fprintf(&c, " WHEN %s THEN %s", ch.cond, ch.msg)
		if i > 0 {
			f.WriteString(" OR ")
		}
		fmt.Fprintf(&f, "coalesce(%s, false)", ch.cond)
	}
	return c.String(), f.String()
}

// hardDelete erases the records listed in morango_harddeletedmodels: their
// store rows keep only a hard-deleted version with "{}" as data, and their
// app rows are deleted.
func (s *serializer) hardDelete(ctx context.Context, res *SerializeResult) error {
	// Most serializations have none: the statements below would still
	// read the app's tables.
	var pending bool
	if err := s.tx.QueryRowContext(ctx, `SELECT EXISTS (`+erasable+`)`).Scan(&pending); err != nil || !pending {
		return err
	}
	if err := s.exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS morango_erase (id TEXT PRIMARY KEY) WITHOUT ROWID`,
		`DELETE FROM temp.morango_erase`, `INSERT INTO temp.morango_erase (id) `+erasable); err != nil {
		return err
	}
	// An erasure this device may not write could never leave it, and it
	// would outweigh every later version here alone: the record stays, and
	// the erasure waits in morango_harddeletedmodels, marked by the reason
	// in morango_dirty, until a certificate lets this device write the
	// record (the reason is cleared and it is tried again), or a version
	// from a device that may replaces the app row (and drops it).
	if out := s.outsideScope("s.partition"); out != "" {
		outside := `SELECT s.id FROM temp.morango_erase e CROSS JOIN morango_store s ON s.id = e.id WHERE ` + out
		err := s.exec(ctx,
			fmt.Sprintf(`INSERT INTO morango_dirty (model, id, error) SELECT s.model_name, s.id, %s FROM morango_store s
				WHERE s.id IN (%s) ON CONFLICT (model, id) DO UPDATE SET error = excluded.error`, outsideReason("s.partition", ""), outside),
			`DELETE FROM temp.morango_erase WHERE id IN (`+outside+`)`)
		if err != nil {
			return err
		}
	}
	n, err := s.count(ctx, `INSERT INTO temp.morango_versioned (id) SELECT e.id FROM temp.morango_erase e
		JOIN morango_store s ON s.id = e.id WHERE s.hard_deleted = 0 OR s.serialized <> '{}' OR s.conflicting_serialized_data <> ''
		ON CONFLICT DO NOTHING`)
	if err != nil {
		return err
	}
	res.HardDeleted = n
	err = s.exec(ctx,
		`UPDATE morango_store SET hard_deleted = 1, deleted = 1, serialized = '{}', _self_ref_fk = '', `+s.lsb()+`
			WHERE id IN (SELECT id FROM temp.morango_versioned)`,
		`INSERT INTO morango_applying (active) VALUES (1)`)
	if err != nil {
		return err
	}
	// The app's own triggers may delete other rows with these (see
	// appWrites): those deletions are the app's.
	apps, err := s.db.appWrites(ctx, s.tx)
	if err == nil {
		err = engineWrites(ctx, s.tx, apps, `SELECT id FROM temp.morango_erase`)
	}
	if err != nil {
		return err
	}
	for _, m := range s.db.profile.Models {
		err := s.exec(ctx,
			fmt.Sprintf(`DELETE FROM %s WHERE id IN (SELECT id FROM temp.morango_erase)`, quote(m.Table)),
			fmt.Sprintf(`DELETE FROM morango_dirty WHERE model = %s AND id IN (SELECT id FROM temp.morango_erase)`, literal(m.Name)))
		if err != nil {
			return err
		}
	}
	if apps {
		if err := s.db.endAppWrites(ctx, s.tx); err != nil {
			return err
		}
	}
	return s.exec(ctx, `DELETE FROM morango_applying`,
		`DELETE FROM morango_harddeletedmodels WHERE id IN (SELECT id FROM temp.morango_erase)`, `DELETE FROM temp.morango_erase`)
}

// erasable lists the hard deletions to make: those listed in
// morango_harddeletedmodels but the ones that wait for this device to
// be allowed to write their records (see serializer.hardDelete).
var erasable = `SELECT h.id FROM morango_harddeletedmodels h WHERE NOT EXISTS (SELECT 1 FROM morango_dirty d
	WHERE d.id = h.id AND d.error LIKE ` + literal(outsidePrefix+"%") + `)`

// model serializes the dirty rows of one model. The model's dirty ids are
// listed once in temp.morango_work, each with whether the store holds its
// record; every later step reads that list, and the steps for records the
// store holds read only those: a first serialization of many rows costs a
// few passes over them, not one per step.
func (s *serializer) model(ctx context.Context, m *profile.Model, res *SerializeResult) error {
	t := s.db.schema[m.Table]
	cols := syncedColumns(t, m)
	table, model := quote(m.Table), literal(m.Name)
	part := templateSQL(m.Partition, "t", "t.id")
	selfRef := "''"
	if c := m.SelfRef(); c != "" {
		selfRef = fmt.Sprintf("coalesce(CAST(t.%s AS TEXT), '')", quote(c))
	}
	const (
		fresh   = `SELECT id FROM temp.morango_work WHERE NOT stored`
		present = `SELECT id FROM temp.morango_work WHERE stored`
	)
	if err := s.exec(ctx, `DELETE FROM temp.morango_work`); err != nil {
		return err
	}
	limit := ""
	if s.budget > 0 {
		limit = fmt.Sprintf(" LIMIT %d", s.budget)
	}
	n, err := s.count(ctx, fmt.Sprintf(`INSERT INTO temp.morango_work (id, stored)
		SELECT d.id, EXISTS (SELECT 1 FROM morango_store s WHERE s.id = d.id) FROM morango_dirty d
		WHERE d.model = %s AND d.error = '' ORDER BY d.id%s`, model, limit))
	if err != nil || n == 0 {
		return err
	}
	if s.budget > 0 {
		s.budget -= n
		s.full = s.budget <= 0
	}
	listed := n
	var newRows int64
	if err := s.tx.QueryRowContext(ctx, `SELECT count(*) FROM temp.morango_work WHERE NOT stored`).Scan(&newRows); err != nil {
		return err
	}
	if err := s.bulk(ctx, newRows); err != nil {
		return err
	}

	// Rows that cannot become records stay in morango_dirty with the reason
	// of the first check they fail. Those of the partition's columns also
	// hold back an edit of a row the store holds: importers check the
	// partition its data renders (its id, partition and source id do not
	// change).
	partition := []sqlCheck{
		{part + ` IS NULL`, literal(fmt.Sprintf("a column of the partition template %q is NULL", m.Partition))},
	}
	// A value a record's data cannot hold holds back the row, and an edit
	// of a row the store holds, alone: it would otherwise stop the whole
	// serialization, or reach the other devices as another value.
	partition = append(partition, valueChecks(cols)...)
	// A value with the separator would give a partition under another's
	// prefix: importers refuse such records (see profile.PartitionSeparator).
	if cols := m.PartitionColumns(); len(cols) > 0 {
		var sep []string
		for _, c := range cols {
			sep = append(sep, fmt.Sprintf("instr(CAST(t.%s AS TEXT), %s) > 0", quote(c), literal(profile.PartitionSeparator)))
		}
		partition = append(partition, sqlCheck{strings.Join(sep, " OR "),
			literal(fmt.Sprintf("a column of the partition template %q holds %q, which separates the parts of a partition", m.Partition, profile.PartitionSeparator))})
	}
	checks := append([]sqlCheck{
		// unhex is NULL for any character that is not a hex digit; lower
		// leaves only lower-case ones. (Cheaper than a GLOB of the class.)
		{`NOT (typeof(t.id) = 'text' AND length(t.id) = 32 AND unhex(t.id) IS NOT NULL AND t.id = lower(t.id))`,
			`'id must be 32 lower-case hex digits'`},
	}, partition...)
	source := "''"
	if m.SourceID != "" {
		source = templateSQL(m.SourceID, "t", "t.id")
		raw := templateSQL(m.Partition, "t", literal(ids.IDPlaceholder))
		want := fmt.Sprintf("morango_sha2_uuid(%s, %s, %s)", raw, source, model)
		checks = append(checks,
			sqlCheck{source + ` IS NULL`, literal(fmt.Sprintf("a column of the source-id template %q is NULL", m.SourceID))},
			sqlCheck{`t.id <> ` + want,
				fmt.Sprintf(`'id must be ' || %s || ' (the namespaced id of its partition, source id and model; see morango id)'`, want)})
	}
	if out := s.outsideScope(part); out != "" {
		checks = append(checks, sqlCheck{out, outsideReason(part, "")})
	}
	cases, fails := checkSQL(checks)
	partCases, partFails := checkSQL(partition)

	// New records: the rows that pass every check, read once. Each is a
	// new version.
	n, err = s.count(ctx, fmt.Sprintf(`INSERT INTO morango_store (id, profile, serialized, deleted, hard_deleted,
			last_saved_instance, last_saved_counter, partition, source_id, model_name, _self_ref_fk)
		SELECT t.id, %s, %s, 0, 0, %s, %d, %s, %s, %s, %s
		FROM %s t WHERE t.id IN (%s) AND NOT (%s)`,
		literal(s.db.profile.Name), jsonObjectSQL("t", cols), literal(s.me), s.c, part, source, model, selfRef, table, fresh, fails))
	if err != nil {
		return err
	}
	res.Created += n
	created := n
	if n == newRows {
		err = s.exec(ctx, `INSERT INTO temp.morango_versioned (id) `+fresh+` ON CONFLICT DO NOTHING`)
	} else {
		// Some were left out: a row that failed a check, or a dirty id with
		// neither an app row nor a record (which makes no version).
		err = s.exec(ctx, `INSERT INTO temp.morango_versioned (id) SELECT w.id FROM temp.morango_work w
			WHERE NOT w.stored AND EXISTS (SELECT 1 FROM morango_store s WHERE s.id = w.id) ON CONFLICT DO NOTHING`)
	}
	if err != nil {
		return err
	}

	// Why the rows left out failed, and, of the records the store holds,
	// those whose id another model's record uses: record ids are unique
	// across models, and such a row stays out of the store.
	if created == newRows && listed == newRows {
		// All new, all written: none failed, and there is nothing more.
		return s.done(ctx, model, limit != "")
	}
	var failNew, failStored string
	if listed > newRows {
		// The listed rows drive the join (CROSS JOIN), and the checks
		// come first: the store is read only for the rows that fail one.
		failStored = fmt.Sprintf(`UNION ALL SELECT w.id, CASE%s END FROM temp.morango_work w CROSS JOIN %s t ON t.id = w.id
			WHERE w.stored AND (%s) AND EXISTS (SELECT 1 FROM morango_store s WHERE s.id = w.id AND s.model_name = %s
				AND NOT (s.deleted AND s.dirty_bit))`, partCases, table, partFails, model)
	}
	if created < newRows {
		failNew = fmt.Sprintf(`UNION ALL SELECT w.id, CASE%s END FROM temp.morango_work w JOIN %s t ON t.id = w.id
			WHERE NOT w.stored AND NOT EXISTS (SELECT 1 FROM morango_store s WHERE s.id = w.id)`, cases, table)
	}
	n, err = s.count(ctx, fmt.Sprintf(`INSERT INTO temp.morango_failed (id, error)
		SELECT id, error FROM (
			SELECT w.id, 'id is already used by a record of model ' || s.model_name || '; give the row a new id' AS error
			FROM temp.morango_work w CROSS JOIN morango_store s ON s.id = w.id WHERE w.stored AND s.model_name <> %s
				AND EXISTS (SELECT 1 FROM %s t WHERE t.id = w.id)
			%s %s)
		WHERE error IS NOT NULL`, model, table, failNew, failStored))
	if err != nil {
		return err
	}
	if n > 0 {
		err = s.exec(ctx,
			fmt.Sprintf(`UPDATE morango_dirty SET error = f.error FROM temp.morango_failed f
				WHERE morango_dirty.model = %s AND morango_dirty.id = f.id`, model),
			`DELETE FROM temp.morango_work WHERE id IN (SELECT id FROM temp.morango_failed)`,
			`DELETE FROM temp.morango_failed`)
		if err != nil {
			return err
		}
	}
	var stored int64
	if err := s.tx.QueryRowContext(ctx, `SELECT count(*) FROM temp.morango_work WHERE stored`).Scan(&stored); err != nil {
		return err
	}
	if stored > 0 {
		if err := s.stored(ctx, m, res, present); err != nil {
			return err
		}
	}
	return s.done(ctx, model, limit != "")
}

// done takes the model's serialized rows off morango_dirty: those listed
// in temp.morango_work if some, every row without an error otherwise.
func (s *serializer) done(ctx context.Context, model string, some bool) error {
	if some {
		// Only the rows taken, the first in id order of those without an
		// error (those that failed have one now): the others wait for the
		// next transaction. A range of the key, not a lookup per row.
		return s.exec(ctx, fmt.Sprintf(`DELETE FROM morango_dirty WHERE model = %s AND error = ''
			AND id <= (SELECT max(id) FROM temp.morango_work)`, model))
	}
	return s.exec(ctx, fmt.Sprintf(`DELETE FROM morango_dirty WHERE model = %s AND error = ''`, model))
}

// stored serializes the dirty rows of m whose record the store holds (the
// subquery present lists them): changed rows get a new version, rows gone
// from the app a deleted one.
func (s *serializer) stored(ctx context.Context, m *profile.Model, res *SerializeResult, present string) error {
	t := s.db.schema[m.Table]
	cols := syncedColumns(t, m)
	table, model := quote(m.Table), literal(m.Name)
	selfRef := "''"
	if c := m.SelfRef(); c != "" {
		selfRef = fmt.Sprintf("coalesce(CAST(t.%s AS TEXT), '')", quote(c))
	}
	// Changed records: a new version when the data differs or the record was
	// deleted. A record whose incoming head had not reached the app yet keeps
	// that head as a concurrent version (see waiting); when the new version
	// displaces it as the head, it is also logged.
	// A row the app kept when its record was deleted (the deletion waits:
	// deleted and dirty) gets none: an edit of it must not bring back what
	// another device deleted, or erased.
	err := s.exec(ctx,
		`CREATE TEMP TABLE IF NOT EXISTS morango_changed (id TEXT PRIMARY KEY, serialized TEXT NOT NULL, self_ref TEXT NOT NULL) WITHOUT ROWID`,
		`DELETE FROM temp.morango_changed`,
		fmt.Sprintf(`INSERT INTO temp.morango_changed (id, serialized, self_ref)
			SELECT id, new, self_ref FROM (
				SELECT s.id, %s AS new, %s AS self_ref, s.serialized AS old, s.deleted, s.last_saved_counter AS lsc
				FROM %s t JOIN morango_store s ON s.id = t.id WHERE t.id IN (%s)
					AND NOT (s.last_saved_instance = %s AND s.last_saved_counter = %d)
					AND NOT (s.deleted AND s.dirty_bit)
					AND NOT (s.dirty_bit AND EXISTS (SELECT 1 FROM morango_shown w WHERE w.id = s.id AND w.serialized IS %s)))
			WHERE (new <> old AND new <> %s) OR deleted`, jsonSetSQL("s.serialized", "t", cols), selfRef, table, present, literal(s.me), s.c,
			jsonObjectSQL("t", cols), respelledSQL("old", cols)),
	)
	if err != nil {
		return err
	}
	if err := s.holdOutside(ctx, m, present); err != nil {
		return err
	}
	waiting, err := s.waiting(ctx, m)
	if err != nil {
		return err
	}
	err = s.exec(ctx,
		fmt.Sprintf(`INSERT INTO morango_conflictlog (record_id, model_name, instance_id, counter, serialized, deleted, logged_at)
			SELECT s.id, s.model_name, s.last_saved_instance, s.last_saved_counter, s.serialized, s.deleted, %s
			FROM morango_store s WHERE s.dirty_bit AND s.id IN (SELECT id FROM temp.morango_changed)`, literal(now())),
	)
	if err != nil {
		return err
	}
	// A new version of a record that was hard-deleted keeps the hard
	// deletions as tombstones (merge.Edit), so that the order in which
	// devices learn of them cannot matter. Those of the records whose head
	// waits are in waiting's siblings already.
	tombs, err := s.tombstones(ctx, present)
	if err != nil {
		return err
	}
	for id := range waiting {
		delete(tombs, id)
	}
	n, err := s.count(ctx, `UPDATE morango_store SET serialized = c.serialized, _self_ref_fk = c.self_ref,
			deleted = 0, hard_deleted = 0, `+s.lsb()+`
		FROM temp.morango_changed c WHERE c.id = morango_store.id`)
	if err != nil {
		return err
	}
	res.Updated += n

	// Deleted records: the app row is gone. One whose incoming head waited
	// keeps that head as a concurrent version, as an edit does (the
	// deletion ranks above it: it stays a conflict the user can see).
	gone, err := s.deletedWaiting(ctx, m, present)
	if err != nil {
		return err
	}
	for id, text := range gone {
		tombs[id] = text
	}
	n, err = s.count(ctx, fmt.Sprintf(`UPDATE morango_store SET deleted = 1, `+s.lsb()+`
		WHERE id IN (%s) AND NOT EXISTS (SELECT 1 FROM %s t WHERE t.id = morango_store.id) AND deleted = 0 AND model_name = %s
			AND id NOT IN (SELECT id FROM temp.morango_failed)`,
		present, table, model))
	if err != nil {
		return err
	}
	res.Deleted += n
	for id, text := range tombs {
		_, err := s.tx.ExecContext(ctx, `UPDATE morango_store SET conflicting_serialized_data = ?
			WHERE id = ? AND last_saved_instance = ? AND last_saved_counter = ?`, text, id, s.me, s.c)
		if err != nil {
			return err
		}
	}
	// The records whose waiting head stays the head were left out of the
	// update: they keep it, dirty, and get the new version as a sibling.
	for id, w := range waiting {
		var err error
		if w.kept {
			_, err = s.tx.ExecContext(ctx, `UPDATE morango_store SET conflicting_serialized_data = ? WHERE id = ?`, w.siblings, id)
			if err == nil {
				_, err = s.tx.ExecContext(ctx, `INSERT INTO temp.morango_versioned (id) VALUES (?) ON CONFLICT DO NOTHING`, id)
			}
			if err == nil {
				// The head still waits; the app shows the edit.
				_, err = s.tx.ExecContext(ctx, fmt.Sprintf(`INSERT INTO morango_shown (id, serialized)
					SELECT t.id, %s FROM %s t WHERE t.id = ?
					ON CONFLICT (id) DO UPDATE SET serialized = excluded.serialized`, jsonObjectSQL("t", cols), table), id)
			}
			res.Updated++
		} else {
			_, err = s.tx.ExecContext(ctx, `UPDATE morango_store SET conflicting_serialized_data = ?
				WHERE id = ? AND last_saved_instance = ? AND last_saved_counter = ?`, w.siblings, id, s.me, s.c)
		}
		if err != nil {
			return err
		}
	}
	return s.exec(ctx, fmt.Sprintf(`INSERT INTO temp.morango_versioned (id) SELECT id FROM morango_store
		WHERE id IN (%s) AND last_saved_instance = %s AND last_saved_counter = %d ON CONFLICT DO NOTHING`, present, literal(s.me), s.c),
		`DELETE FROM temp.morango_failed`)
}

// holdOutside keeps the changes of records the store holds (the subquery
// present lists them) out of the new versions when their partition lies
// outside what this device may write: edited rows (listed in
// temp.morango_changed) and rows the app deleted. They wait in
// morango_dirty with the reason, and stay listed in temp.morango_failed
// until the end of stored. A row the app touched without changing its
// synced data makes no version, and does not wait.
func (s *serializer) holdOutside(ctx context.Context, m *profile.Model, present string) error {
	out := s.outsideScope("s.partition")
	if out == "" {
		return nil
	}
	// The edited data must stay where this device may write too, with
	// the certificate that may write the record: importers check the
	// partition a record's data gives (its record keeps its own) against
	// the write scope of the one certificate that signed the bundle.
	part := templateSQL(m.Partition, "t", "t.id")
	n, err := s.count(ctx, fmt.Sprintf(`INSERT INTO temp.morango_failed (id, error)
		SELECT s.id, %[1]s FROM temp.morango_changed c CROSS JOIN morango_store s ON s.id = c.id WHERE %[2]s
		UNION ALL
		SELECT s.id, %[1]s FROM morango_store s WHERE s.id IN (%[3]s) AND s.model_name = %[4]s AND s.deleted = 0
			AND NOT EXISTS (SELECT 1 FROM %[5]s t WHERE t.id = s.id) AND %[2]s
		UNION ALL
		SELECT t.id, %[6]s FROM temp.morango_changed c CROSS JOIN %[5]s t ON t.id = c.id WHERE %[7]s
		UNION ALL
		SELECT t.id, %[8]s FROM temp.morango_changed c CROSS JOIN %[5]s t ON t.id = c.id
			CROSS JOIN morango_store s ON s.id = t.id WHERE %[9]s
		ON CONFLICT DO NOTHING`, outsideReason("s.partition", ""), out, present, literal(m.Name), quote(m.Table),
		outsideReason(part, ", where the row's data puts it"), s.outsideScope(part),
		outsideReason(part, ", where the row's data puts it, with a certificate that may write its record's partition too"),
		s.apartScope("s.partition", part)))
	if err != nil || n == 0 {
		return err
	}
	return s.exec(ctx,
		fmt.Sprintf(`UPDATE morango_dirty SET error = f.error FROM temp.morango_failed f
			WHERE morango_dirty.model = %s AND morango_dirty.id = f.id`, literal(m.Name)),
		`DELETE FROM temp.morango_changed WHERE id IN (SELECT id FROM temp.morango_failed)`)
}

// waitingEdit is the new state of a record edited while its head waited
// to be written to the app: its siblings' text, and whether the waiting
// head stays the head.
type waitingEdit struct {
	siblings string
	kept     bool
}

// waiting makes the new versions of the records in temp.morango_changed
// whose head never reached the app: the store row is dirty, as an
// incoming version waits (for a parent this device lacks, say) while the
// app shows an older one, which the user edited. The new version
// supersedes what the app could have shown, not the waiting head: the
// two stay as concurrent versions (merge.EditBeside), so every device
// sees the conflict. If the waiting head stays the head, the record is
// taken off temp.morango_changed and keeps its head and dirty bit (it is
// written to the app later); otherwise the update writes the new version
// as usual, and the caller sets the siblings returned. Such records are
// few: they are read and decided one by one.
func (s *serializer) waiting(ctx context.Context, m *profile.Model) (map[string]waitingEdit, error) {
	rows, err := s.tx.QueryContext(ctx, `SELECT `+recordColumns("s")+`, c.serialized FROM temp.morango_changed c
		CROSS JOIN morango_store s ON s.id = c.id WHERE s.dirty_bit AND NOT s.deleted AND NOT s.hard_deleted`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]waitingEdit{}
	rule := ruleFor(m)
	for rows.Next() {
		var r Record
		var edited string
		if err := scanRecord(scanWith{rows, []any{&edited}}, &r); err != nil {
			return nil, err
		}
		edit := merge.Version{Instance: s.me, Counter: s.c, Serialized: edited}
		st, err := besideWaiting(&r, edit, rule)
		if err != nil {
			return nil, err
		}
		out[r.ID] = waitingEdit{siblings: merge.EncodeSiblings(st.Siblings), kept: st.Head != edit}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	for id, w := range out {
		if w.kept {
			if _, err := s.tx.ExecContext(ctx, `DELETE FROM temp.morango_changed WHERE id = ?`, id); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// deletedWaiting returns, for the records of m that the app deleted while
// their incoming head waited to reach it, the siblings of their deletion:
// that head beside it (merge.EditBeside), and their tombstones.
func (s *serializer) deletedWaiting(ctx context.Context, m *profile.Model, present string) (map[string]string, error) {
	rows, err := s.tx.QueryContext(ctx, fmt.Sprintf(`SELECT `+recordColumns("s")+` FROM morango_store s
		WHERE s.id IN (%s) AND s.model_name = %s AND s.dirty_bit AND NOT s.deleted AND NOT s.hard_deleted
			AND NOT EXISTS (SELECT 1 FROM %s t WHERE t.id = s.id) AND s.id NOT IN (SELECT id FROM temp.morango_failed)`,
		present, literal(m.Name), quote(m.Table)))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	var lost []Record
	rule := ruleFor(m)
	for rows.Next() {
		var r Record
		if err := scanRecord(rows, &r); err != nil {
			return nil, err
		}
		del := merge.Version{Instance: s.me, Counter: s.c, Deleted: true, Serialized: r.Serialized}
		st, err := besideWaiting(&r, del, rule)
		if err != nil {
			return nil, err
		}
		if st.Head != del {
			return nil, fmt.Errorf("record %s: its waiting version ranks above its deletion", r.ID)
		}
		out[r.ID] = merge.EncodeSiblings(st.Siblings)
		if !st.Holds(headOf(&r)) {
			lost = append(lost, r)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	// Too large to keep beside the deletion (see merge.EditBeside): kept
	// here only, as a displaced head is.
	for _, r := range lost {
		_, err := s.tx.ExecContext(ctx, `INSERT INTO morango_conflictlog (record_id, model_name, instance_id, counter, serialized, deleted, logged_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, r.ID, r.ModelName, r.LastSavedInstance, r.LastSavedCounter, r.Serialized, r.Deleted, now())
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// headOf returns the head version of record r.
func headOf(r *Record) merge.Version {
	return merge.Version{Instance: r.LastSavedInstance, Counter: r.LastSavedCounter, Serialized: r.Serialized,
		Deleted: r.Deleted, HardDeleted: r.HardDeleted}
}

// besideWaiting returns the state of record r after this device's new
// version v, made while r's head waited to reach the app: that head stays
// beside v (merge.EditBeside).
func besideWaiting(r *Record, v merge.Version, rule merge.Rule) (merge.State, error) {
	prev, err := stateOf(r)
	if err != nil {
		return merge.State{}, fmt.Errorf("record %s: %w", r.ID, err)
	}
	st := merge.EditBeside(&prev, v, prev.Head, rule)
	if err := st.Validate(); err != nil {
		return merge.State{}, fmt.Errorf("record %s: new version beside its waiting version: %w", r.ID, err)
	}
	return st, nil
}

// scanWith scans a row of a record's columns followed by more columns,
// into more.
type scanWith struct {
	sc   scanner
	more []any
}

func (w scanWith) Scan(dest ...any) error { return w.sc.Scan(append(dest, w.more...)...) }

// tombstones returns, for the dirty records of a model that hold hard
// deletions, the siblings a local edit keeps: those hard deletions.
func (s *serializer) tombstones(ctx context.Context, dirty string) (map[string]string, error) {
	rows, err := s.tx.QueryContext(ctx, `SELECT `+recordColumns("s")+` FROM morango_store s WHERE s.id IN (`+dirty+`)
		AND (s.hard_deleted OR s.conflicting_serialized_data LIKE '%"hard_deleted":true%')`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var r Record
		if err := scanRecord(rows, &r); err != nil {
			return nil, err
		}
		prev, err := stateOf(&r)
		if err != nil {
			return nil, fmt.Errorf("record %s: %w", r.ID, err)
		}
		st := merge.Edit(&prev, merge.Version{Instance: s.me, Counter: s.c})
		out[r.ID] = merge.EncodeSiblings(st.Siblings)
	}
	return out, rows.Err()
}
