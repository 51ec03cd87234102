package session

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/morango-sync/morango/bundle"
	"github.com/morango-sync/morango/fsic"
	"github.com/morango-sync/morango/ids"
)

// A learner's tablet (single-user: it reads its own partitions and the
// shared read-only one) signs, with its own valid key, a manifest whose
// counters claim versions of the facility's instance above the facility's
// counter. In another learner's partition, which the tablet may not even
// read, no device could hold them: that is no evidence that the facility
// was restored, and it keeps its instance. In the tablet's own partition
// the claim cannot be told from a true one, and the facility takes a new
// instance; the bundle the tablet wrote for its former instance is still
// imported, so a device that makes others renew at every visit delays
// nothing written for them.
func TestForgedCountersDoNotLoseBundles(t *testing.T) {
	for _, c := range []struct {
		name  string
		renew bool
	}{{"other learner's partition", false}, {"own partition", true}} {
		t.Run(c.name, func(t *testing.T) {
			fac, home, f, stick := learnerTablet(t)
			visit := func(d *device) *ExchangeResult { return visitStick(t, stick, d, d.db) }
			visit(fac)
			log := ids.Random()
			home.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, 'c9', 1)`, log, f.dataset, f.learner)
			visit(home) // writes the bundle with the log, addressed to the facility

			facInst, homeInst := fac.instance(), home.instance()
			chain, err := home.db.Chain(t.Context(), home.cert)
			if err != nil {
				t.Fatal(err)
			}
			part := f.dataset + ":user-rw:" + f.other
			if c.renew {
				part = f.dataset + ":user-rw:" + f.learner
			}
			m := &bundle.Manifest{
				Profile:  home.db.Profile().Name,
				Created:  time.Now().UTC().Format(time.RFC3339),
				Instance: homeInst,
				CertID:   home.cert,
				Chain:    chain,
				Filter:   []string(f.learnerScope()),
				FSIC:     fsic.V2{Super: fsic.Partitions{}, Sub: fsic.Partitions{part: fsic.Counters{facInst: 1 << 40}}},
				Name:     "home",
			}
			fh, err := os.Create(filepath.Join(stick, ManifestName(homeInst)))
			if err != nil {
				t.Fatal(err)
			}
			if err := bundle.WriteManifest(fh, m, home.ownCert(home.cert).PrivateKey); err != nil {
				t.Fatal(err)
			}
			if err := fh.Close(); err != nil {
				t.Fatal(err)
			}

			r := visit(fac)
			if (r.Renewed != "") != c.renew {
				t.Errorf("renewed %q, want a renewal: %v", r.Renewed, c.renew)
			}
			if n := fac.count(`SELECT count(*) FROM contentlog WHERE id = ?`, log); n != 1 {
				t.Errorf("facility: the learner's log, in a bundle addressed to the facility, never arrived")
			}
		})
	}
}
