package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
)

// Private keys live in the database (morango_certificate.private_key,
// morango_certrequest.private_key), unencrypted. The database file and the
// files SQLite keeps beside it are therefore made readable and writable by
// their owner only once they hold a key, or are about to.
//
// SQLite creates the -wal and -shm files (and a -journal) with the
// permissions of the database file, whatever the umask, so a database file
// of mode 0600 keeps them at 0600 too.

// groupOtherBits are the permission bits that let anyone but the owner in.
const groupOtherBits fs.FileMode = 0o077

// sidecarSuffixes name the files SQLite keeps beside a database: the write-
// ahead log and its shared-memory index (WAL mode, which the store uses),
// and the rollback journal.
var sidecarSuffixes = []string{"", "-wal", "-shm", "-journal"}

// restrictFiles removes the group and other permission bits of the database
// file at path and of those of its sidecar files that exist. The owner's
// bits are kept: a database of mode 0644 becomes 0600. It does nothing on
// Windows, whose permissions are not mode bits.
func restrictFiles(path string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	var errs []error
	for _, s := range sidecarSuffixes {
		p := path + s
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if mode := fi.Mode().Perm(); mode&groupOtherBits != 0 {
			if err := os.Chmod(p, mode&^groupOtherBits); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// protectKeyFiles makes the database file and its sidecar files readable by
// their owner only. It is called before a private key is stored, so that
// the key is never written to a file others can read; it fails, and the key
// must not be stored, when the permissions cannot be changed (the file
// belongs to another user).
func (db *DB) protectKeyFiles() error {
	if err := restrictFiles(db.path); err != nil {
		return withHint(fmt.Errorf("protect the private keys in %s: %w", db.path, err),
			"make the database readable by its owner only ('chmod 600 %s*'), as the user that owns it, then run the command again", db.path)
	}
	return nil
}

// holdsPrivateKeys reports whether the database holds a private key: of a
// certificate, or of a certificate request not yet granted.
func (db *DB) holdsPrivateKeys(ctx context.Context) (bool, error) {
	var n int
	err := db.w.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM morango_certificate WHERE private_key IS NOT NULL AND private_key != '')
		OR EXISTS (SELECT 1 FROM morango_certrequest WHERE private_key IS NOT NULL AND private_key != '')`).Scan(&n)
	return n != 0, err
}

// protectOnOpen restricts the files of a database that holds private keys:
// databases written before keys were protected, or whose permissions were
// opened since. A failure is logged, not returned: the database stays
// usable, and storing a new key fails instead (protectKeyFiles).
func (db *DB) protectOnOpen(ctx context.Context) {
	keys, err := db.holdsPrivateKeys(ctx)
	if err != nil {
		db.log.Warn("cannot tell whether the database holds private keys", "path", db.path, "err", err)
		return
	}
	if !keys {
		return
	}
	if err := restrictFiles(db.path); err != nil {
		db.log.Warn("the database holds private keys and others may read it", "path", db.path, "err", err)
	}
}
