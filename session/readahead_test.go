package session

import (
	"context"
	"strings"
	"testing"

	"github.com/morango-sync/morango/store"
)

// A check that panics on a record (a defect a hostile bundle could trip)
// ends the import's read with an error, and the records already read are
// not applied past it; the process goes on.
func TestReadAheadCheckPanicIsAnError(t *testing.T) {
	each := func(ctx context.Context, fn func(*store.Record) error) error {
		for i := range 3 * batchSize {
			r := store.Record{ID: "r", Serialized: "{}"}
			if i == batchSize+1 {
				r.ID = "boom"
			}
			if err := fn(&r); err != nil {
				return err
			}
		}
		return nil
	}
	check := func(r *store.Record) string {
		if r.ID == "boom" {
			var m map[string]int
			m["x"]++ // a nil map: panics
		}
		return ""
	}
	var applied int
	err := readAhead(context.Background(), each, check, func(b []checked) error {
		applied += len(b)
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "internal error") || !strings.Contains(err.Error(), "nothing was imported") {
		t.Fatalf("err = %v", err)
	}
	if applied > batchSize {
		t.Errorf("%d records applied; the batch with the failing record must not be", applied)
	}
}
