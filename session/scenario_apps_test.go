package session_test

// App behaviours of the convergence scenario beyond plain edits: triggers
// that silently skip some of the engine's writes with RAISE(IGNORE) for a
// while, and edits of rows whose incoming version waits that the user
// undoes again.
//
// They run in the slow mode (MORANGO_SLOW_TESTS=1), or with
// MORANGO_SC_APPS=1; the default run keeps its speed. Switch off in the
// slow mode: MORANGO_SC_IGNORE=0 (ignoring triggers), MORANGO_SC_UNDO=0
// (undone edits).

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
)

// scIgnore is an app trigger on one device that skips the engine's
// inserts, updates or deletions of some rows of a table with
// RAISE(IGNORE), until the app drops it.
type scIgnore struct {
	dev   int
	name  string
	table string
	until int // the step after which the app drops it
}

// ignoreWrites has the app of a random device install a trigger that
// skips the engine's writes of some rows of a table: rows of given ids
// (records some device holds), or rows whose data matches a condition. It
// stays for a few steps.
func (s *scSim) ignoreWrites() {
	d := s.dev()
	ti := s.rng.IntN(len(scTables))
	table := scTables[ti].name
	op := []string{"INSERT", "UPDATE", "DELETE"}[s.rng.IntN(3)]
	row := "NEW"
	if op == "DELETE" {
		row = "OLD"
	}
	var cond string
	if s.rng.IntN(10) < 7 {
		// Inserts of rows other devices hold and d's app does not;
		// updates and deletions of rows d's app holds.
		seen := map[string]bool{}
		for _, id := range s.liveIDs(d, table) {
			seen[id] = true
		}
		var cand []string
		if op == "INSERT" {
			for _, o := range s.devs {
				for _, id := range s.queryIDs(o, `SELECT id FROM morango_store WHERE model_name = ? AND NOT hard_deleted ORDER BY `+scStoreOrder, table) {
					if !seen[id] {
						seen[id] = true
						cand = append(cand, id)
					}
				}
			}
		} else {
			// Preferably rows another device holds another version of:
			// their next import into d brings it.
			head := func(o *scDevice, id string) string {
				var h string
				err := o.app.QueryRow(`SELECT last_saved_instance || ':' || last_saved_counter FROM morango_store WHERE id = ?`, id).Scan(&h)
				if err != nil && !errors.Is(err, sql.ErrNoRows) {
					s.check(err, "head of %s", id)
				}
				return h
			}
			live := s.liveIDs(d, table)
			for _, id := range live {
				mine := head(d, id)
				for _, o := range s.devs {
					if h := head(o, id); o != d && h != "" && h != mine {
						cand = append(cand, id)
						break
					}
				}
			}
			if len(cand) == 0 {
				cand = live
			}
		}
		if len(cand) == 0 {
			return
		}
		var l []string
		for range 1 + s.rng.IntN(3) {
			l = append(l, "'"+s.pick(cand)+"'")
		}
		cond = row + ".id IN (" + strings.Join(l, ", ") + ")"
	} else {
		switch table {
		case "person":
			cond = fmt.Sprintf("%s.age %% 3 = %d", row, s.rng.IntN(3))
		case "note":
			cond = fmt.Sprintf("%s.body < '%s'", row, strings.ReplaceAll(scWords[s.rng.IntN(len(scWords))], "'", "''"))
		case "summary":
			cond = fmt.Sprintf("%s.progress >= %g", row, float64(s.rng.IntN(5))/4)
		}
	}
	name := fmt.Sprintf("ignore_%d", s.stats["ignore-trigger"])
	ig := scIgnore{dev: d.idx, name: name, table: table, until: s.steps + 2 + s.rng.IntN(8)}
	s.logf("dev%d: app ignores the engine's %s of %s where %s, until step %d (%s)", d.idx, op, table, cond, ig.until, name)
	s.exec(d, fmt.Sprintf(`CREATE TRIGGER %s BEFORE %s ON %s WHEN EXISTS (SELECT 1 FROM morango_applying) AND (%s)
		BEGIN SELECT RAISE(IGNORE); END`, name, op, table, cond))
	s.ignores = append(s.ignores, ig)
	s.stats["ignore-trigger"]++
}

// dropIgnores drops the ignoring triggers whose time is up (all of them
// when all is set). The app sometimes has the engine retry the records
// that wait at once, else a later import does.
func (s *scSim) dropIgnores(all bool) {
	var kept []scIgnore
	retry := map[int]bool{}
	for _, ig := range s.ignores {
		if !all && ig.until > s.steps {
			kept = append(kept, ig)
			continue
		}
		d := s.devs[ig.dev]
		s.logf("dev%d: app drops %s", d.idx, ig.name)
		s.exec(d, `DROP TRIGGER `+ig.name)
		if all || s.rng.IntN(2) == 0 {
			retry[d.idx] = true
		}
	}
	s.ignores = kept
	for _, d := range s.devs {
		if !retry[d.idx] {
			continue
		}
		res, tried, err := d.db.RetryPending(s.ctx)
		s.check(err, "device %d: retry pending", d.idx)
		s.observe(d)
		if tried {
			s.logf("dev%d: retry pending: %+v", d.idx, res)
			s.stats["retry-pending"]++
		}
	}
}

// ignoring reports whether d's app has an ignoring trigger.
func (s *scSim) ignoring(d *scDevice) bool {
	for _, ig := range s.ignores {
		if ig.dev == d.idx {
			return true
		}
	}
	return false
}

func scAppsOn() bool { return scSlow() || os.Getenv("MORANGO_SC_APPS") == "1" }

// scCascadeOn has every device's app delete a person's notes with her, by
// a trigger of its own (MORANGO_SC_CASCADE=1): the notes it deletes as the
// engine deletes a person are the app's deletions.
func scCascadeOn() bool { return os.Getenv("MORANGO_SC_CASCADE") == "1" }

const scCascadeTrigger = `CREATE TRIGGER notes_go AFTER DELETE ON person BEGIN DELETE FROM note WHERE person_id = OLD.id; END`

// scWelcomeOn has every device's app write a welcome note for each new
// person, by a trigger of its own (MORANGO_SC_WELCOME=1), also as the
// engine writes her: the note's id is drawn from the person's, so every
// device makes the same record.
func scWelcomeOn() bool { return os.Getenv("MORANGO_SC_WELCOME") == "1" }

const scWelcomeTrigger = `CREATE TRIGGER welcome AFTER INSERT ON person BEGIN
	INSERT INTO note (id, dataset_id, person_id, body) VALUES (substr(NEW.id, 1, 24) || 'eeeeeeee', NEW.dataset_id, NEW.id, 'welcome')
	ON CONFLICT (id) DO NOTHING; END`

// isWelcomeNote reports whether id is that of a welcome note scWelcomeTrigger writes.
func isWelcomeNote(id string) bool { return strings.HasSuffix(id, "eeeeeeee") }

func scIgnoreOn() bool { return scAppsOn() && os.Getenv("MORANGO_SC_IGNORE") != "0" }
func scUndoOn() bool   { return scAppsOn() && os.Getenv("MORANGO_SC_UNDO") != "0" }

// checkWritten checks, after an import into d, that every record whose
// head the engine counts as written (not dirty) is what the app shows,
// unless the app changed the row since; and that every record left
// waiting says why. A write an app trigger skipped must leave its record
// waiting.
func (s *scSim) checkWritten(d *scDevice) {
	s.t.Helper()
	s.stats["ignored-waiting"] += len(s.queryIDs(d, `SELECT id FROM morango_store WHERE deserialization_error LIKE '%ignored%'`))
	for _, tb := range scTables {
		var args []string
		for _, c := range tb.cols {
			args = append(args, fmt.Sprintf("'%s', a.%s", c, c))
		}
		rows, err := d.app.Query(`SELECT s.id, s.deleted, s.serialized, CASE WHEN a.id IS NULL THEN '' ELSE json_object(`+strings.Join(args, ", ")+`) END
			FROM morango_store s LEFT JOIN `+tb.name+` a ON a.id = s.id
			WHERE s.model_name = ? AND NOT s.dirty_bit AND NOT EXISTS (SELECT 1 FROM morango_dirty m WHERE m.model = s.model_name AND m.id = s.id)
			ORDER BY s.id`, tb.name)
		s.check(err, "written records")
		type bad struct {
			id, data, row string
			deleted       bool
		}
		var l []bad
		for rows.Next() {
			var b bad
			s.check(rows.Scan(&b.id, &b.deleted, &b.data, &b.row), "scan")
			if b.deleted && b.row != "" || !b.deleted && b.row != b.data {
				l = append(l, b)
			}
		}
		rows.Close()
		for _, b := range l {
			s.fail("device %d: %s %s is not waiting, but the app shows %q for its head (deleted %v) %q", d.idx, tb.name, b.id, b.row, b.deleted, b.data)
		}
	}
	for _, id := range s.queryIDs(d, `SELECT id FROM morango_store WHERE dirty_bit AND deserialization_error = '' ORDER BY id`) {
		s.fail("device %d: record %s waits to reach the app, and does not say why", d.idx, id)
	}
}

// editUndo has the app change a row whose incoming version waits and then
// change it back: with no serialization in between, or deleting and
// inserting it again, the row is touched but shows what it showed, and
// must make no version (the incoming one still waits, to be written
// later); with a serialization in between, the change and its undoing are
// two versions.
func (s *scSim) editUndo(d *scDevice, ti int, id string) {
	s.t.Helper()
	tb := scTables[ti]
	var before string
	err := d.app.QueryRow(`SELECT `+scRowJSON(tb.cols)+` FROM `+tb.name+` WHERE id = ?`, id).Scan(&before)
	if errors.Is(err, sql.ErrNoRows) {
		return
	}
	s.check(err, "read %s %s", tb.name, id)
	// Was the row as the app last showed it, with nothing unserialized?
	var lsi string
	var lsc int64
	var pristine bool
	s.check(d.app.QueryRow(`SELECT last_saved_instance, last_saved_counter,
		NOT EXISTS (SELECT 1 FROM morango_dirty WHERE model = ? AND id = ?) FROM morango_store WHERE id = ?`, tb.name, id, id).
		Scan(&lsi, &lsc, &pristine), "read record %s", id)
	var sets []string
	for _, c := range tb.cols[1:] {
		sets = append(sets, fmt.Sprintf("%[1]s = json_extract(?1, '$.%[1]s')", c))
	}
	restore := `UPDATE ` + tb.name + ` SET ` + strings.Join(sets, ", ") + ` WHERE id = ?2`
	variant := s.rng.IntN(3)
	switch variant {
	case 0:
		s.logf("dev%d: edit and undo %s %s", d.idx, tb.name, id[:6])
		s.update(d, ti, id)
		s.exec(d, restore, before, id)
	case 1:
		s.logf("dev%d: delete and insert again %s %s", d.idx, tb.name, id[:6])
		s.exec(d, `DELETE FROM `+tb.name+` WHERE id = ?`, id)
		var cols, vals []string
		for _, c := range tb.cols {
			cols = append(cols, c)
			vals = append(vals, fmt.Sprintf("json_extract(?1, '$.%s')", c))
		}
		s.exec(d, `INSERT INTO `+tb.name+` (`+strings.Join(cols, ", ")+`) VALUES (`+strings.Join(vals, ", ")+`)`, before)
	case 2:
		s.logf("dev%d: edit, serialize, undo %s %s", d.idx, tb.name, id[:6])
		s.update(d, ti, id)
		_, err := d.db.Serialize(s.ctx)
		s.check(err, "serialize")
		s.observe(d)
		s.exec(d, restore, before, id)
	}
	if after := s.appRow(d, tb.name, id); after != before {
		s.fail("device %d: undoing the edit of %s %s left %q, want %q", d.idx, tb.name, id, after, before)
	}
	s.stats["edit-undo"]++
	if variant == 2 || !pristine {
		return
	}
	// The touch makes no version: the record's head stays the incoming
	// one, still waiting.
	_, err = d.db.Serialize(s.ctx)
	s.check(err, "serialize")
	s.observe(d)
	var lsi2 string
	var lsc2 int64
	var dirty bool
	s.check(d.app.QueryRow(`SELECT last_saved_instance, last_saved_counter, dirty_bit FROM morango_store WHERE id = ?`, id).
		Scan(&lsi2, &lsc2, &dirty), "read record %s", id)
	if lsi2 != lsi || lsc2 != lsc || !dirty {
		s.fail("device %d: a touch of %s %s that changed nothing made version %s:%d (was %s:%d, waiting %v)",
			d.idx, tb.name, id, lsi2, lsc2, lsi, lsc, dirty)
	}
	s.stats["edit-undo-touch"]++
}
