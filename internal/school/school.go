// Package school is the sample app of the demo and the benchmark: a school
// like the one in the user story, with its SQLite schema, its sync profile
// and a deterministic generator of realistic data, written with plain SQL
// through database/sql as the app itself would write it.
//
// The schema and profile embedded here are canonical; testdata/school holds
// byte-identical copies for the tests of other packages.
//
// Who may read what follows Kolibri's five partition kinds, with D the
// dataset id (the id of the facility's root certificate) and U a user id:
//
//	facilitydataset      ${id}:allusers-ro               everyone reads (its id is D)
//	facility             ${dataset_id}:allusers-ro       everyone reads
//	facilityuser         ${dataset_id}:user-ro:${id}     the user reads their own row
//	classroom            ${dataset_id}:allusers-ro       everyone reads
//	membership           ${dataset_id}:user-ro:${user_id}
//	lesson               ${dataset_id}:allusers-ro       coaches write at the facility
//	lessonassignment     ${dataset_id}:allusers-ro
//	contentsummarylog    ${dataset_id}:user-rw:${user_id} the learner writes on their device
//	contentsessionlog    ${dataset_id}:user-rw:${user_id}
//	anonymoussessionlog  ${dataset_id}:anonymous          any device writes, only the facility reads
//	coachnote            ${dataset_id}                    admins only
//
// A learner's tablet (scope single-user) reads D:user-rw:U, D:allusers-ro
// and D:user-ro:U, so every row it receives references only rows it
// receives too.
package school

import (
	"context"
	"database/sql"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/morango-sync/morango/ids"
	"github.com/morango-sync/morango/profile"
)

//go:embed schema.sql
var schema string

//go:embed profile.json
var profileJSON []byte

// Schema returns the app's SQL schema.
func Schema() string { return schema }

// ProfileJSON returns the app's sync profile, a fresh copy.
func ProfileJSON() []byte { return slices.Clone(profileJSON) }

// sample is the parsed profile; the tests keep it valid.
var sample = sync.OnceValue(func() *profile.Profile {
	p, err := profile.Parse(profileJSON)
	if err != nil {
		panic("school: the embedded profile is invalid: " + err.Error())
	}
	return p
})

// Options configure Generate.
type Options struct {
	// Seed makes the data deterministic: the same seed, records and time
	// give the same rows.
	Seed uint64
	// Records is the approximate number of rows to write (at least 20).
	Records int
	// Now is the time of the latest activity; zero means 2026-11-02 08:00 UTC.
	Now time.Time
}

// Summary says what Generate wrote.
type Summary struct {
	DatasetID  string
	FacilityID string
	// AdminID is the facility's admin, who is also the coach.
	AdminID string
	// LearnerIDs are the learners, each a member of one classroom.
	LearnerIDs []string
	Classrooms []string
	Lessons    []string
	// Rows is the number of rows written, all tables together.
	Rows int
}

// SummaryLogID returns the id of a learner's summary log for a content
// item: the namespaced id the profile's source-id rule gives, so that two
// devices creating it converge on one row.
func SummaryLogID(datasetID, userID, contentID string) string {
	id, err := sample().Model("contentsummarylog").ComputeID(func(c string) (string, bool) {
		switch c {
		case "dataset_id":
			return datasetID, true
		case "user_id":
			return userID, true
		case "content_id":
			return contentID, true
		}
		return "", false
	})
	if err != nil {
		panic("school: " + err.Error()) // the profile's templates name only these columns
	}
	return id
}

// timestamp formats t as the app stores times (the original's JSON form).
func timestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// defaultNow is the time of the latest generated activity.
var defaultNow = time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)

// bulkCacheKiB is the page cache Generate loads with, as a negative
// PRAGMA cache_size (KiB); SQLite grows the cache only as it is used.
const bulkCacheKiB = -128 << 10

// contentItems is the size of the channel learners work through.
const contentItems = 500

// contentID returns the id of the i-th content item of the channel.
func contentID(i int) string { return ids.SHA2UUID("sample-channel", fmt.Sprint(i)) }

// generator holds what one run writes with.
type generator struct {
	ctx     context.Context
	tx      *sql.Tx
	dataset string
	rng     *rand.Rand
	now     time.Time
	content []string

	summary, session, anon, note *sql.Stmt
	// summaries are the summary logs of the activities not yet flushed,
	// by (learner, content item), in order of first activity.
	summaries map[[2]int]*summaryLog
	order     [][2]int
}

func newGenerator(ctx context.Context, tx *sql.Tx, dataset string, seed uint64, now time.Time) (*generator, error) {
	g := &generator{ctx: ctx, tx: tx, dataset: dataset, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		now: now, summaries: map[[2]int]*summaryLog{}}
	for i := range contentItems {
		g.content = append(g.content, contentID(i))
	}
	var err error
	prepare := func(q string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var st *sql.Stmt
		st, err = tx.PrepareContext(ctx, q)
		return st
	}
	// A summary log accumulates its sessions, as the app updates it.
	g.summary = prepare(`INSERT INTO contentsummarylog (id, dataset_id, user_id, content_id, progress, time_spent, completed, modified)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET progress = max(progress, excluded.progress),
		time_spent = time_spent + excluded.time_spent, completed = completed OR excluded.completed, modified = excluded.modified`)
	g.session = prepare(`INSERT INTO contentsessionlog (id, dataset_id, user_id, content_id, start_time, end_time, progress)
		VALUES (?, ?, ?, ?, ?, ?, ?)`)
	g.anon = prepare(`INSERT INTO anonymoussessionlog (id, dataset_id, content_id, start_time, end_time) VALUES (?, ?, ?, ?, ?)`)
	g.note = prepare(`INSERT INTO coachnote (id, dataset_id, user_id, author_id, body, modified) VALUES (?, ?, ?, ?, ?, ?)`)
	return g, err
}

// id returns the next app-chosen id: 32 hex digits from the seeded source.
func (g *generator) id() string {
	var b [16]byte
	for i := range 2 {
		v := g.rng.Uint64()
		for j := range 8 {
			b[i*8+j] = byte(v >> (8 * j))
		}
	}
	return hex.EncodeToString(b[:])
}

// within returns a time in the week before now.
func (g *generator) within() time.Time {
	return g.now.Add(-time.Duration(g.rng.IntN(7*24*3600)) * time.Second)
}

// summaryLog is a summary log's running totals.
type summaryLog struct {
	user, content   string
	progress, spent float64
	completed       bool
	modified        time.Time
}

// activity is one session of a learner on a content item: it writes the
// session log and adds the session to the learner's summary log for the
// item, which flush writes.
func (g *generator) activity(learner int, userID string) error {
	c := g.rng.IntN(len(g.content))
	start := g.within()
	spent := time.Duration(60+g.rng.IntN(1800)) * time.Second
	end := start.Add(spent)
	progress := float64(g.rng.IntN(101)) / 100
	content := g.content[c]
	if _, err := g.session.ExecContext(g.ctx, g.id(), g.dataset, userID, content, timestamp(start), timestamp(end), progress); err != nil {
		return fmt.Errorf("session log: %w", err)
	}
	key := [2]int{learner, c}
	sum := g.summaries[key]
	if sum == nil {
		sum = &summaryLog{user: userID, content: content}
		g.summaries[key] = sum
		g.order = append(g.order, key)
	}
	sum.progress = max(sum.progress, progress)
	sum.spent += spent.Seconds()
	sum.completed = sum.completed || progress == 1
	if end.After(sum.modified) {
		sum.modified = end
	}
	return nil
}

// flush writes the summary logs of the activities so far, in the order
// they were first touched, merging into a summary log already there as the
// app does.
func (g *generator) flush() error {
	for _, key := range g.order {
		sum := g.summaries[key]
		_, err := g.summary.ExecContext(g.ctx, SummaryLogID(g.dataset, sum.user, sum.content), g.dataset, sum.user, sum.content,
			sum.progress, sum.spent, sum.completed, timestamp(sum.modified))
		if err != nil {
			return fmt.Errorf("summary log: %w", err)
		}
	}
	clear(g.summaries)
	g.order = g.order[:0]
	return nil
}

// Generate writes a school's data for datasetID through the app's own
// connection, in one transaction with prepared statements: one dataset and
// facility; about one user per 200 rows, at least three (the first the
// admin and coach, the others learners); a classroom per 30 users, each
// with two lessons assigned to it; a membership per learner; and logs for
// the rest — learners' session logs with their summary logs, about 3%
// anonymous logs and 2% coach notes.
func Generate(ctx context.Context, db *sql.DB, datasetID string, opts Options) (Summary, error) {
	s := Summary{DatasetID: datasetID}
	if !ids.Valid(datasetID) {
		return s, fmt.Errorf("generate: dataset id %q is not 32 lower-case hex digits", datasetID)
	}
	now := opts.Now
	if now.IsZero() {
		now = defaultNow
	}
	n := max(opts.Records, 20)
	users := max(3, n/200)
	rooms := max(1, users/30)

	// One connection with a page cache large enough for a million random
	// ids: the app's bulk load, not its everyday setting, which is restored.
	conn, err := db.Conn(ctx)
	if err != nil {
		return s, fmt.Errorf("generate: %w", err)
	}
	defer conn.Close()
	var cache int64
	if err := conn.QueryRowContext(ctx, `PRAGMA cache_size`).Scan(&cache); err != nil {
		return s, fmt.Errorf("generate: %w", err)
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf(`PRAGMA cache_size = %d`, bulkCacheKiB)); err != nil {
		return s, fmt.Errorf("generate: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), fmt.Sprintf(`PRAGMA cache_size = %d`, cache))
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return s, fmt.Errorf("generate: %w", err)
	}
	defer tx.Rollback()
	g, err := newGenerator(ctx, tx, datasetID, opts.Seed, now)
	if err != nil {
		return s, fmt.Errorf("generate: %w", err)
	}
	ts := timestamp(now.Add(-30 * 24 * time.Hour))
	s.FacilityID = g.id()
	fail := func(what string, err error) (Summary, error) {
		return s, fmt.Errorf("generate %s: %w", what, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO facilitydataset (id, description, location) VALUES (?, 'Sample school', 'Hillside')`, datasetID); err != nil {
		return fail("dataset", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO facility (id, dataset_id, name, modified) VALUES (?, ?, 'Hillside School', ?)`, s.FacilityID, datasetID, ts); err != nil {
		return fail("facility", err)
	}
	s.Rows = 2

	user, err := tx.PrepareContext(ctx, `INSERT INTO facilityuser (id, dataset_id, facility_id, username, full_name, role, modified, ui_theme)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fail("users", err)
	}
	for i := range users {
		uid, role, name := g.id(), "learner", fmt.Sprintf("learner%d", i)
		if i == 0 {
			role, name, s.AdminID = "admin", "admin", uid
		} else {
			s.LearnerIDs = append(s.LearnerIDs, uid)
		}
		theme := []string{"light", "dark", "contrast"}[g.rng.IntN(3)]
		if _, err := user.ExecContext(ctx, uid, datasetID, s.FacilityID, name, strings.ToUpper(name[:1])+name[1:], role, ts, theme); err != nil {
			return fail("users", err)
		}
		s.Rows++
	}

	room, err := tx.PrepareContext(ctx, `INSERT INTO classroom (id, dataset_id, facility_id, name, modified) VALUES (?, ?, ?, ?, ?)`)
	if err != nil {
		return fail("classrooms", err)
	}
	for i := range rooms {
		cid := g.id()
		s.Classrooms = append(s.Classrooms, cid)
		if _, err := room.ExecContext(ctx, cid, datasetID, s.FacilityID, fmt.Sprintf("Class %d", i+1), ts); err != nil {
			return fail("classrooms", err)
		}
		s.Rows++
		for j := range 2 {
			lid, err := insertLesson(ctx, tx, g.id(), g.id(), datasetID, cid, fmt.Sprintf("Lesson %d.%d", i+1, j+1), ts)
			if err != nil {
				return fail("lessons", err)
			}
			s.Lessons = append(s.Lessons, lid)
			s.Rows += 2
		}
	}

	member, err := tx.PrepareContext(ctx, `INSERT INTO membership (id, dataset_id, user_id, classroom_id) VALUES (?, ?, ?, ?)`)
	if err != nil {
		return fail("memberships", err)
	}
	for i, uid := range s.LearnerIDs {
		if _, err := member.ExecContext(ctx, g.id(), datasetID, uid, s.Classrooms[i%len(s.Classrooms)]); err != nil {
			return fail("memberships", err)
		}
		s.Rows++
	}

	for s.Rows < n {
		switch k := g.rng.IntN(100); {
		case k < 3:
			start := g.within()
			_, err = g.anon.ExecContext(ctx, g.id(), datasetID, g.content[g.rng.IntN(len(g.content))],
				timestamp(start), timestamp(start.Add(10*time.Minute)))
			s.Rows++
		case k < 5:
			_, err = g.note.ExecContext(ctx, g.id(), datasetID, s.LearnerIDs[g.rng.IntN(len(s.LearnerIDs))], s.AdminID,
				"Doing well; needs help with fractions.", timestamp(g.within()))
			s.Rows++
		default:
			l := g.rng.IntN(len(s.LearnerIDs))
			before := len(g.order)
			err = g.activity(l, s.LearnerIDs[l])
			s.Rows += 1 + len(g.order) - before
		}
		if err != nil {
			return fail("logs", err)
		}
	}
	if err := g.flush(); err != nil {
		return fail("logs", err)
	}
	if err := tx.Commit(); err != nil {
		return fail("commit", err)
	}
	return s, nil
}

// insertLesson writes a lesson and its assignment to a classroom.
func insertLesson(ctx context.Context, tx *sql.Tx, lessonID, assignmentID, datasetID, classroomID, title, ts string) (string, error) {
	_, err := tx.ExecContext(ctx, `INSERT INTO lesson (id, dataset_id, classroom_id, title, is_active, modified) VALUES (?, ?, ?, ?, 1, ?)`,
		lessonID, datasetID, classroomID, title, ts)
	if err != nil {
		return "", err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO lessonassignment (id, dataset_id, lesson_id, classroom_id, assigned_at) VALUES (?, ?, ?, ?, ?)`,
		assignmentID, datasetID, lessonID, classroomID, ts)
	return lessonID, err
}

// LearnerWeek writes what a learner does offline in a week before now: n
// activities, each a new session log and its summary log created or
// updated, through the app's own connection. The seed makes it
// deterministic.
func LearnerWeek(ctx context.Context, db *sql.DB, datasetID, userID string, n int, seed uint64, now time.Time) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("learner week: %w", err)
	}
	defer tx.Rollback()
	g, err := newGenerator(ctx, tx, datasetID, seed, now)
	if err != nil {
		return fmt.Errorf("learner week: %w", err)
	}
	for range n {
		if err := g.activity(0, userID); err != nil {
			return fmt.Errorf("learner week: %w", err)
		}
	}
	if err := g.flush(); err != nil {
		return fmt.Errorf("learner week: %w", err)
	}
	return tx.Commit()
}

// AssignLesson is a coach creating a lesson for a classroom and assigning
// it, as the app does at the facility. It returns the new lesson's id.
func AssignLesson(ctx context.Context, db *sql.DB, datasetID, classroomID, title string, now time.Time) (string, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("assign lesson: %w", err)
	}
	defer tx.Rollback()
	id, err := insertLesson(ctx, tx, ids.Random(), ids.Random(), datasetID, classroomID, title, timestamp(now))
	if err != nil {
		return "", fmt.Errorf("assign lesson: %w", err)
	}
	return id, tx.Commit()
}

// ErrNoRow is returned by EditRow when the table has no row with the id.
var ErrNoRow = errors.New("no such row")

// EditRow is a user editing a row of the app: it sets the given columns
// of the row with the id and, if the table has a "modified" column that is
// not among them, stamps it with now.
func EditRow(ctx context.Context, db *sql.DB, table, id string, values map[string]any, now time.Time) error {
	var cols []string
	rows, err := db.QueryContext(ctx, `SELECT name FROM pragma_table_info(?)`, table)
	if err != nil {
		return fmt.Errorf("edit %s: %w", table, err)
	}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			rows.Close()
			return fmt.Errorf("edit %s: %w", table, err)
		}
		cols = append(cols, c)
	}
	rows.Close()
	if len(cols) == 0 {
		return fmt.Errorf("edit %s: no such table", table)
	}
	set := make(map[string]any, len(values)+1)
	for c, v := range values {
		if !slices.Contains(cols, c) {
			return fmt.Errorf("edit %s: no column %q", table, c)
		}
		set[c] = v
	}
	if _, ok := set["modified"]; !ok && slices.Contains(cols, "modified") {
		set["modified"] = timestamp(now)
	}
	if len(set) == 0 {
		return nil
	}
	var assign []string
	var args []any
	for _, c := range slices.Sorted(maps.Keys(set)) {
		assign = append(assign, quote(c)+" = ?")
		args = append(args, set[c])
	}
	res, err := db.ExecContext(ctx, fmt.Sprintf(`UPDATE %s SET %s WHERE id = ?`, quote(table), strings.Join(assign, ", ")), append(args, id)...)
	if err != nil {
		return fmt.Errorf("edit %s %s: %w", table, id, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("edit %s %s: %w", table, id, ErrNoRow)
	}
	return nil
}

// quote quotes an SQL identifier.
func quote(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }
