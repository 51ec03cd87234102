package cli

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/morango-sync/morango/store"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:  "verify",
		Usage: "check the database's sync invariants and report every problem; reads only",
		Description: `Opens the database read-only and checks: the SQLite file (integrity and foreign
keys), the sync tables' version, the instance and its counter, the change-tracking triggers, every
store record (profile, model, id, partition, data, history, conflicting versions, the counters
this database claims) and every app row against its record. Each problem names the record and
says what to do. Unserialized changes and records waiting to be written to the app are notices.
Exits 1 if any error was found, 0 otherwise (notices allowed).

Example:
   morango verify --db school.sqlite3
   morango verify --db school.sqlite3 --json`,
		Flags: []cli.Flag{dbFlag, jsonFlag},
		Action: func(c *cli.Context) error {
			var res *store.VerifyResult
			var err error
			if c.Bool("json") {
				res, err = verifyJSON(c, out(c))
			} else {
				res, err = verifyText(c)
			}
			if err != nil {
				return err
			}
			if res.Errors > 0 {
				return &exitError{code: ExitFailure, err: fmt.Errorf("verify: %s in %s", verifyCount(res.Errors, "error"), res.Path),
					hint: "each problem says what to do; morango verify changes nothing"}
			}
			return nil
		},
	}
}

func verifyCount(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// verifyText prints each problem as it is found, then a summary.
func verifyText(c *cli.Context) (*store.VerifyResult, error) {
	res, err := store.Verify(c.Context, c.String("db"), func(p store.VerifyProblem) error {
		label := "ERROR "
		if p.Severity == store.SeverityNotice {
			label = "notice"
		}
		what := p.Model
		if p.ID != "" {
			what += " " + p.ID
		}
		if what != "" {
			what = "  " + what
		}
		printf(c, "%s %s%s\n  %s\n  fix: %s\n", label, p.Kind, what, p.Problem, p.Fix)
		return nil
	})
	if err != nil {
		return nil, err
	}
	printf(c, "verified %s", res.Path)
	if res.Profile != "" {
		printf(c, " (profile %s, %s, %s)", res.Profile, verifyCount(res.Records, "record"), verifyCount(res.AppRows, "app row"))
	}
	switch {
	case res.Errors == 0 && res.Notices == 0:
		printf(c, ": no problems\n")
	default:
		printf(c, ": %s, %s\n", verifyCount(res.Errors, "error"), verifyCount(res.Notices, "notice"))
	}
	return res, nil
}

// verifyJSON writes one JSON document, {"problems": [...], "path": ...,
// "errors": N, "notices": N, "ok": B}, streaming the problems as they are
// found so that memory does not grow with their number.
func verifyJSON(c *cli.Context, w io.Writer) (*store.VerifyResult, error) {
	n := 0
	if _, err := io.WriteString(w, "{\n  \"problems\": ["); err != nil {
		return nil, err
	}
	res, verr := store.Verify(c.Context, c.String("db"), func(p store.VerifyProblem) error {
		b, err := json.MarshalIndent(p, "    ", "  ")
		if err != nil {
			return err
		}
		sep := ",\n    "
		if n == 0 {
			sep = "\n    "
		}
		n++
		_, err = io.WriteString(w, sep+string(b))
		return err
	})
	if n > 0 {
		io.WriteString(w, "\n  ")
	}
	tail := struct {
		*store.VerifyResult
		OK    bool   `json:"ok"`
		Error string `json:"error,omitempty"`
	}{VerifyResult: res}
	if res == nil {
		tail.VerifyResult = &store.VerifyResult{Path: c.String("db")}
	}
	if verr != nil {
		tail.Error = verr.Error()
	} else {
		tail.OK = res.OK()
	}
	b, err := json.MarshalIndent(tail, "", "  ")
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(w, "],"+string(b[1:])+"\n"); err != nil {
		return nil, err
	}
	return res, verr
}
