package session

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/morango-sync/morango/bundle"
	"github.com/morango-sync/morango/store"
)

// An export hands the records it reads from the store to the goroutine
// that writes the bundle in batches. Records that each carry the longest
// history a record may have (bundle.MaxRecordCounters entries, 1.5 MiB
// each once read), which a signer may send within its own scope and a
// device then exports to its peers, must not fill a batch of pipeBatch of
// them: batches are bounded by their memory too.
func TestPipeRecordsLongHistories(t *testing.T) {
	hist := make([]store.HistoryEntry, bundle.MaxRecordCounters)
	for i := range hist {
		hist[i] = store.HistoryEntry{Instance: fmt.Sprintf("%032x", i), Counter: 1}
	}
	const n = 300
	each := func(ctx context.Context, fn func(*store.Record) error) error {
		var r store.Record // reused, as the store's reader does
		for i := range n {
			r = store.Record{ID: fmt.Sprintf("%032x", i), Serialized: "{}", History: hist}
			if err := fn(&r); err != nil {
				return err
			}
		}
		return nil
	}
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	written := 0
	var err error
	peak, _ := heapPeak(func() {
		err = pipeRecords(t.Context(), each, func(r *store.Record, _ *bundle.Record) error {
			if len(r.History) != len(hist) {
				return fmt.Errorf("record %s has %d history entries, want %d", r.ID, len(r.History), len(hist))
			}
			written++
			time.Sleep(time.Millisecond) // the writing side is the slower one, as compressing is
			return nil
		}, func() error { return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	if written != n {
		t.Errorf("wrote %d records, want %d", written, n)
	}
	t.Logf("heap %d MiB before, %d MiB at most", m.HeapAlloc>>20, peak>>20)
	if peak > m.HeapAlloc+128<<20 {
		t.Errorf("the export held %d MiB of records", (peak-m.HeapAlloc)>>20)
	}
}
