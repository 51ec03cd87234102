// Package school is the sample app of the demo and the benchmark: a school
// like the one in the user story, with its schema, its profile and a
// deterministic generator of realistic data written with plain SQL, as the
// app itself would write it. The files testdata/school/schema.sql and
// testdata/school/profile.json are copies of the ones embedded here.
package school

import (
	"context"
	"database/sql"
	_ "embed"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/morango-sync/morango/ids"
)

//go:embed schema.sql
var schema string

//go:embed profile.json
var profileJSON []byte

// Schema returns the app's SQL schema.
func Schema() string { return schema }

// ProfileJSON returns the app's sync profile.
func ProfileJSON() []byte { return append([]byte(nil), profileJSON...) }

// Options configure Generate.
type Options struct {
	// Seed makes the data deterministic.
	Seed uint64
	// Records is the approximate number of rows to write.
	Records int
	// Now is the time the rows are stamped with.
	Now time.Time
}

// Summary says what Generate wrote.
type Summary struct {
	DatasetID  string
	FacilityID string
	// AdminID is a coach and admin; LearnerIDs are the learners.
	AdminID    string
	LearnerIDs []string
	Classrooms []string
	Lessons    []string
	Rows       int
}

// SummaryLogID returns the id of a learner's summary log for a content
// item: the namespaced id the profile's source-id rule gives, so that two
// devices creating it converge on one row.
func SummaryLogID(datasetID, userID, contentID string) string {
	return ids.Namespaced(datasetID+":user-rw:"+userID, userID+":"+contentID, "contentsummarylog")
}

// timestamp formats t as the app stores times.
func timestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// Generate writes a school's data for datasetID in one transaction with
// prepared statements: one dataset and facility, about one user per 200
// rows (at least three: an admin and learners), classrooms, memberships,
// lessons and assignments, and the rest logs — mostly learners' session and
// summary logs, a few anonymous logs and coach notes.
func Generate(ctx context.Context, db *sql.DB, datasetID string, opts Options) (Summary, error) {
	rng := rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15))
	id := func() string { return fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64()) }
	now := opts.Now
	if now.IsZero() {
		now = time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)
	}
	n := max(opts.Records, 20)
	users := max(3, n/200)
	rooms := max(1, users/30)
	s := Summary{DatasetID: datasetID, FacilityID: id()}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return s, err
	}
	defer tx.Rollback()
	exec := func(q string, args ...any) error {
		_, err := tx.ExecContext(ctx, q, args...)
		return err
	}
	ts := timestamp(now)
	if err := exec(`INSERT INTO facilitydataset (id, description, location) VALUES (?, 'Sample school', 'Hillside')`, datasetID); err != nil {
		return s, fmt.Errorf("generate: %w", err)
	}
	if err := exec(`INSERT INTO facility (id, dataset_id, name, modified) VALUES (?, ?, 'Hillside School', ?)`, s.FacilityID, datasetID, ts); err != nil {
		return s, fmt.Errorf("generate: %w", err)
	}
	s.Rows = 2
	user, err := tx.PrepareContext(ctx, `INSERT INTO facilityuser (id, dataset_id, facility_id, username, full_name, role, modified) VALUES (?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return s, err
	}
	for i := 0; i < users; i++ {
		uid, role := id(), "learner"
		if i == 0 {
			role, s.AdminID = "admin", uid
		} else {
			s.LearnerIDs = append(s.LearnerIDs, uid)
		}
		if _, err := user.ExecContext(ctx, uid, datasetID, s.FacilityID, fmt.Sprintf("user%d", i), fmt.Sprintf("User %d", i), role, ts); err != nil {
			return s, fmt.Errorf("generate users: %w", err)
		}
		s.Rows++
	}
	for i := 0; i < rooms; i++ {
		cid := id()
		s.Classrooms = append(s.Classrooms, cid)
		if err := exec(`INSERT INTO classroom (id, dataset_id, facility_id, name, modified) VALUES (?, ?, ?, ?, ?)`, cid, datasetID, s.FacilityID, fmt.Sprintf("Class %d", i+1), ts); err != nil {
			return s, fmt.Errorf("generate classrooms: %w", err)
		}
		for j := 0; j < 2; j++ {
			lid := id()
			s.Lessons = append(s.Lessons, lid)
			if err := exec(`INSERT INTO lesson (id, dataset_id, classroom_id, title, is_active, modified) VALUES (?, ?, ?, ?, 1, ?)`, lid, datasetID, cid, fmt.Sprintf("Lesson %d.%d", i+1, j+1), ts); err != nil {
				return s, fmt.Errorf("generate lessons: %w", err)
			}
			if err := exec(`INSERT INTO lessonassignment (id, dataset_id, lesson_id, classroom_id, assigned_at) VALUES (?, ?, ?, ?, ?)`, id(), datasetID, lid, cid, ts); err != nil {
				return s, fmt.Errorf("generate assignments: %w", err)
			}
			s.Rows += 2
		}
		s.Rows++
	}
	member, err := tx.PrepareContext(ctx, `INSERT INTO membership (id, dataset_id, user_id, classroom_id) VALUES (?, ?, ?, ?)`)
	if err != nil {
		return s, err
	}
	for i, uid := range s.LearnerIDs {
		if _, err := member.ExecContext(ctx, id(), datasetID, uid, s.Classrooms[i%len(s.Classrooms)]); err != nil {
			return s, fmt.Errorf("generate memberships: %w", err)
		}
		s.Rows++
	}
	logs := &logWriter{ctx: ctx, tx: tx, dataset: datasetID, rng: rng, id: id}
	if err := logs.prepare(); err != nil {
		return s, err
	}
	for s.Rows < n {
		k := rng.IntN(100)
		var err error
		switch {
		case k < 3:
			err = logs.anonymous(now)
		case k < 5:
			err = exec(`INSERT INTO coachnote (id, dataset_id, user_id, author_id, body, modified) VALUES (?, ?, ?, ?, ?, ?)`,
				id(), datasetID, s.LearnerIDs[rng.IntN(len(s.LearnerIDs))], s.AdminID, "Doing well; needs help with fractions.", ts)
		default:
			err = logs.learner(s.LearnerIDs[rng.IntN(len(s.LearnerIDs))], now)
		}
		if err != nil {
			return s, fmt.Errorf("generate logs: %w", err)
		}
		s.Rows++
	}
	if err := tx.Commit(); err != nil {
		return s, err
	}
	return s, nil
}

// logWriter writes learners' logs with prepared statements.
type logWriter struct {
	ctx              context.Context
	tx               *sql.Tx
	dataset          string
	rng              *rand.Rand
	id               func() string
	summary, session *sql.Stmt
	anon             *sql.Stmt
	summariesWritten map[string]bool
}

func (w *logWriter) prepare() error {
	var err error
	w.summariesWritten = map[string]bool{}
	if w.summary, err = w.tx.PrepareContext(w.ctx, `INSERT INTO contentsummarylog (id, dataset_id, user_id, content_id, progress, time_spent, completed, modified)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET progress = max(progress, excluded.progress),
		time_spent = time_spent + excluded.time_spent, completed = completed OR excluded.completed, modified = excluded.modified`); err != nil {
		return err
	}
	if w.session, err = w.tx.PrepareContext(w.ctx, `INSERT INTO contentsessionlog (id, dataset_id, user_id, content_id, start_time, end_time, progress)
		VALUES (?, ?, ?, ?, ?, ?, ?)`); err != nil {
		return err
	}
	w.anon, err = w.tx.PrepareContext(w.ctx, `INSERT INTO anonymoussessionlog (id, dataset_id, content_id, start_time, end_time) VALUES (?, ?, ?, ?, ?)`)
	return err
}

// content picks one of the channel's content items.
func (w *logWriter) content() string { return fmt.Sprintf("%032x", w.rng.IntN(5000)+1) }

// learner writes a session log, or a summary log one time in three.
func (w *logWriter) learner(userID string, now time.Time) error {
	start := now.Add(-time.Duration(w.rng.IntN(7*24*3600)) * time.Second)
	end := start.Add(time.Duration(60+w.rng.IntN(1800)) * time.Second)
	progress := float64(w.rng.IntN(101)) / 100
	content := w.content()
	if w.rng.IntN(3) == 0 {
		sid := SummaryLogID(w.dataset, userID, content)
		if !w.summariesWritten[sid] {
			w.summariesWritten[sid] = true
			_, err := w.summary.ExecContext(w.ctx, sid, w.dataset, userID, content, progress, end.Sub(start).Seconds(), progress == 1, timestamp(end))
			return err
		}
	}
	_, err := w.session.ExecContext(w.ctx, w.id(), w.dataset, userID, content, timestamp(start), timestamp(end), progress)
	return err
}

func (w *logWriter) anonymous(now time.Time) error {
	start := now.Add(-time.Duration(w.rng.IntN(7*24*3600)) * time.Second)
	_, err := w.anon.ExecContext(w.ctx, w.id(), w.dataset, w.content(), timestamp(start), timestamp(start.Add(10*time.Minute)))
	return err
}

// LearnerWeek writes what a learner does offline in a week: n session logs
// with their summary logs, through the app's own connection.
func LearnerWeek(ctx context.Context, db *sql.DB, datasetID, userID string, n int, seed uint64, now time.Time) error {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	w := &logWriter{ctx: ctx, tx: tx, dataset: datasetID, rng: rng,
		id: func() string { return fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64()) }}
	if err := w.prepare(); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if err := w.learner(userID, now); err != nil {
			return err
		}
	}
	return tx.Commit()
}
