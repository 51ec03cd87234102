package bundle

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestZZHunt(t *testing.T) {
	names, _ := filepath.Glob(filepath.Join(goldenDir, "*.bundle"))
	var seeds [][]byte
	for _, n := range names {
		b, _ := os.ReadFile(n)
		seeds = append(seeds, b)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for i := 0; i < 3000; i++ {
		si := rng.IntN(len(seeds))
		d := bytes.Clone(seeds[si])
		for k := 0; k < 1+rng.IntN(4); k++ {
			if len(d) == 0 {
				break
			}
			switch rng.IntN(3) {
			case 0:
				d[rng.IntN(len(d))] ^= byte(1 << rng.IntN(8))
			case 1:
				d[rng.IntN(len(d))] = byte(rng.IntN(256))
			case 2:
				j := rng.IntN(len(d))
				d = append(d[:j], d[j+1:]...)
			}
		}
		st := time.Now()
		r, err := NewReader(bytes.NewReader(d), &ReaderOptions{Unverified: true})
		if err == nil {
			for {
				if _, err = r.Next(); err != nil {
					break
				}
			}
		}
		if el := time.Since(st); el > 200*time.Millisecond {
			t.Logf("%d: seed %s took %v: %v", i, filepath.Base(names[si]), el, err)
		}
	}
}
