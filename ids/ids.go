// Package ids computes the identifiers the original Morango uses: sha2_uuid,
// namespaced record ids, salted hashes of system facts and proquints.
//
// Every id is a 32-character lower-case hex string without dashes.
package ids

import (
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// IDPlaceholder is the literal a partition template uses for the row's own id.
// It stays in the partition when the namespaced id is computed and is replaced
// by the id afterwards.
const IDPlaceholder = "${id}"

// SHA2UUID returns the first 32 hex digits of the SHA-256 of the arguments
// joined with "::", as the original's sha2_uuid does. Empty arguments still
// contribute their separators.
func SHA2UUID(args ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(args, "::")))
	return hex.EncodeToString(sum[:16])
}

// Namespaced returns the id of a record of model created under the raw
// partition (with the ${id} placeholder still in it) from the given source id.
func Namespaced(rawPartition, sourceID, model string) string {
	return SHA2UUID(rawPartition, sourceID, model)
}

// FinalPartition replaces every ${id} in a raw partition with id, as the
// original does. The engine renders a row's partition from its template
// instead (profile.Model.PartitionOf, and in SQL when it serializes), which
// puts the id only where the template has ${id}: the two differ only where
// a value, or the template's literal text ($${id}), spells "${id}".
func FinalPartition(rawPartition, id string) string {
	return strings.ReplaceAll(rawPartition, IDPlaceholder, id)
}

// RawPartition turns a stored partition back into its raw form by replacing
// every occurrence of id with the ${id} placeholder, as a receiver does to
// re-check a record's id.
func RawPartition(partition, id string) string {
	if id == "" {
		return partition
	}
	return strings.ReplaceAll(partition, id, IDPlaceholder)
}

// hashSalt is the salt the original appends to system facts before hashing.
const hashSalt = "::b88281f3-302c-4def-bb87-043f681e4183"

// SaltedHash returns the first 20 hex digits of SHA-1 of the lower-cased value
// followed by the original's salt, or "" for an empty value.
func SaltedHash(value string) string {
	if value == "" {
		return ""
	}
	sum := sha1.Sum([]byte(strings.ToLower(value + hashSalt)))
	return hex.EncodeToString(sum[:])[:20]
}

// Random returns a new random id (a version 4 UUID without dashes).
func Random() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("ids: no randomness: " + err.Error())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return hex.EncodeToString(b[:])
}

// Valid reports whether s is a 32-character lower-case hex id.
func Valid(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Proquint returns the proquint of the first 8 hex digits of id read as a
// 32-bit number, the "instance hash" the original shows to users
// (e45c0659… → vidis-binin). It returns "" if id is too short.
func Proquint(id string) string {
	if len(id) < 8 {
		return ""
	}
	b, err := hex.DecodeString(id[:8])
	if err != nil {
		return ""
	}
	const cons = "bdfghjklmnprstvz"
	const vows = "aiou"
	word := func(v uint16) string {
		return string([]byte{
			cons[v>>12&0xf], vows[v>>10&0x3], cons[v>>6&0xf], vows[v>>4&0x3], cons[v&0xf],
		})
	}
	return word(uint16(b[0])<<8|uint16(b[1])) + "-" + word(uint16(b[2])<<8|uint16(b[3]))
}
