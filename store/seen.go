package store

import "hash/maphash"

// seenSet is a Bloom filter of record ids: contains is false for every id
// never added, and true for those added (and, rarely, for others). An
// import into a store that was empty when it began reads no local record
// for an id the filter has not seen: no record can have it.
type seenSet struct {
	bits []uint64
	seed maphash.Seed
}

// seenHashes is the number of bits an id sets: with 16 bits per id,
// about one id in 2 000 not added is reported as seen.
const seenHashes = 6

// newSeenSet returns a filter sized for n ids, 16 bits each, at most
// 32 MiB.
func newSeenSet(n int64) *seenSet {
	words := min(max(n/4, 1024), 4<<20)
	return &seenSet{bits: make([]uint64, words), seed: maphash.MakeSeed()}
}

// positions returns the two hashes whose combinations give the bits of id.
func (s *seenSet) positions(id string) (uint64, uint64) {
	h := maphash.String(s.seed, id)
	return h, h>>32 | h<<32 | 1
}

func (s *seenSet) add(id string) {
	a, b := s.positions(id)
	n := uint64(len(s.bits)) * 64
	for i := uint64(0); i < seenHashes; i++ {
		bit := (a + i*b) % n
		s.bits[bit/64] |= 1 << (bit % 64)
	}
}

func (s *seenSet) contains(id string) bool {
	a, b := s.positions(id)
	n := uint64(len(s.bits)) * 64
	for i := uint64(0); i < seenHashes; i++ {
		bit := (a + i*b) % n
		if s.bits[bit/64]&(1<<(bit%64)) == 0 {
			return false
		}
	}
	return true
}
