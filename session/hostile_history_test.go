package session

import (
	"fmt"
	"os"
	"runtime"
	"testing"

	"github.com/morango-sync/morango/bundle"
	"github.com/morango-sync/morango/ids"
)

// longHistory is a record-max counter list of the most entries a record may
// carry (bundle.MaxRecordCounters), of short made-up instances: a list
// that costs 6 bytes a entry in the bundle (and almost nothing once
// compressed, repeated record after record) but 24 bytes a entry, plus its
// instance, once decoded.
func longHistory() []bundle.Counter {
	l := make([]bundle.Counter, bundle.MaxRecordCounters)
	for i := range l {
		l[i] = bundle.Counter{Instance: fmt.Sprintf("%04x", i), Counter: 1}
	}
	return l
}

// TestHostileSignerHistoryMemory: the learner's tablet signs a small bundle
// of records that each carry the longest history a record may have, all
// of which City refuses as they are read (they lie outside the signer's
// scope). Their data is tiny, so a batch of the import held 500 of them,
// whatever their histories: about 1.9 MiB each once decoded. Importing it
// must hold a bounded number of them in memory at once.
func TestHostileSignerHistoryMemory(t *testing.T) {
	h := newHostile(t)
	f := h.f
	inst := h.home.instance()
	hist := longHistory()
	const n = 200
	recs := make([]bundle.Record, n)
	for i := range recs {
		recs[i] = logRecord(ids.Random(), f.dataset, f.other, "c1", 0.5, inst, int64(100+i))
		recs[i].LastSavedInstance, recs[i].LastSavedCounter = hist[0].Instance, hist[0].Counter
		recs[i].RMC = hist
	}
	p := h.path("long-histories.bundle")
	writeBundle(t, p, bundle.Header{Profile: "facilitydata", SenderInstance: inst, SenderCert: h.home.cert,
		Chain: h.chain(h.home), Filter: []string{f.dataset + ":user-rw:" + f.learner}}, h.home.ownCert(h.home.cert).PrivateKey, recs)
	recs, hist = nil, nil
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	var r *ImportResult
	peak, after := heapPeak(func() { r, err = h.city.importBundle(p) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d KiB bundle: heap %d MiB before, %d MiB at most, %d MiB after with the result", fi.Size()>>10,
		m.HeapAlloc>>20, peak>>20, after>>20)
	if r.Store.Refused != n {
		t.Errorf("refused %d of %d", r.Store.Refused, n)
	}
	if peak > m.HeapAlloc+160<<20 {
		t.Errorf("the import held %d MiB", (peak-m.HeapAlloc)>>20)
	}
	runtime.KeepAlive(r)
}
