package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/morango-sync/morango/certs"
)

// ErrUnknownCertificate is returned for a certificate this database does
// not hold.
var ErrUnknownCertificate = errors.New("unknown certificate")

// StoredCertificate is a certificate held by this database.
type StoredCertificate struct {
	Link     certs.Link
	ParentID string
	Profile  string
	Scope    string // scope definition id
	Params   string // scope params (JSON)
	// PrivateKey is the PEM private key if this device made the
	// certificate's key; it never leaves the device.
	PrivateKey string
	// Trusted marks a root this device accepts data under.
	Trusted bool
}

// SaveCertificate stores a verified certificate. A private key is kept only
// when given; trusted marks a root as trusted (it never un-trusts).
func (db *DB) SaveCertificate(ctx context.Context, c *certs.Certificate, privateKeyPEM string, trusted bool) error {
	var parent any
	if c.ParentID != "" {
		parent = c.ParentID
	}
	var key any
	if privateKeyPEM != "" {
		if err := db.protectKeyFiles(); err != nil {
			return err
		}
		key = privateKeyPEM
	}
	return db.writeTx(ctx, func(tx *sql.Tx) error {
		var first bool // the first key this device holds
		if key != nil {
			if err := tx.QueryRowContext(ctx, `SELECT NOT EXISTS (SELECT 1 FROM morango_certificate WHERE private_key <> '')`).Scan(&first); err != nil {
				return fmt.Errorf("save certificate %s: %w", c.ID, err)
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO morango_certificate (id, parent_id, profile, scope_definition_id, scope_version,
			scope_params, public_key, salt, serialized, signature, private_key, trusted, added_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET private_key = coalesce(morango_certificate.private_key, excluded.private_key),
				trusted = morango_certificate.trusted OR excluded.trusted`,
			c.ID, parent, c.Profile, c.ScopeDefinitionID, c.ScopeVersion, c.ScopeParams, certs.PublicKeyString(c.PublicKey),
			c.Salt, c.Serialized, c.Signature, key, trusted, now())
		if err != nil {
			return fmt.Errorf("save certificate %s: %w", c.ID, err)
		}
		if first {
			if err := db.unversionOutside(ctx, tx, c); err != nil {
				return fmt.Errorf("save certificate %s: %w", c.ID, err)
			}
		}
		// What this device may write may have grown: changes that waited
		// for it are tried again by the next serialization.
		_, err = tx.ExecContext(ctx, `UPDATE morango_dirty SET error = '' WHERE error LIKE ? || '%'`, outsidePrefix)
		return err
	})
}

// unversionOutside turns the versions this device made before it held any
// certificate's key, of records outside what c, its first, lets it write,
// back into changes of the app's rows. Such a version could never leave the
// device, and would compete there with the versions of devices that may
// write the record, so that it would show its own data for good. As a
// change, the row waits with the reason (morango status lists it) until a
// version from a device that may write it replaces it, or a certificate
// lets this device write it, as a change made after the certificate does.
// Before its first key a device can neither import nor export, so every
// record it holds is its own; records whose history names another
// instance are left alone all the same.
func (db *DB) unversionOutside(ctx context.Context, tx *sql.Tx, c *certs.Certificate) error {
	scope, err := c.Scope(db.profile)
	if err != nil {
		return nil // a scope this profile cannot read grants nothing, and takes nothing back
	}
	stmts := []string{
		`DROP TABLE IF EXISTS temp.morango_unversion`,
		fmt.Sprintf(`CREATE TEMP TABLE morango_unversion AS SELECT s.id, s.model_name FROM morango_store s
			WHERE s.profile = %s AND NOT %s AND NOT EXISTS (SELECT 1 FROM morango_recordmaxcounter h
				WHERE h.store_model_id = s.id AND h.instance_id NOT IN (SELECT id FROM morango_instanceid))`,
			literal(db.profile.Name), partitionIn(scope.Write, "s.partition")),
		`INSERT INTO morango_dirty (model, id) SELECT model_name, id FROM temp.morango_unversion WHERE true
			ON CONFLICT (model, id) DO NOTHING`,
		`DELETE FROM morango_recordmaxcounter WHERE store_model_id IN (SELECT id FROM temp.morango_unversion)`,
		`DELETE FROM morango_store WHERE id IN (SELECT id FROM temp.morango_unversion)`,
		`DROP TABLE temp.morango_unversion`,
	}
	for _, q := range stmts {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("turn versions outside the certificate's write scope back into changes: %w", err)
		}
	}
	return nil
}

func scanCertificate(sc scanner) (*StoredCertificate, error) {
	var s StoredCertificate
	var parent, key sql.NullString
	err := sc.Scan(&s.Link.ID, &s.Link.Serialized, &s.Link.Signature, &parent, &s.Profile, &s.Scope, &s.Params, &key, &s.Trusted)
	if err != nil {
		return nil, err
	}
	s.ParentID, s.PrivateKey = parent.String, key.String
	return &s, nil
}

const certColumns = `id, serialized, signature, parent_id, profile, scope_definition_id, scope_params, private_key, trusted`

// Certificate returns a stored certificate.
func (db *DB) Certificate(ctx context.Context, id string) (*StoredCertificate, error) {
	s, err := scanCertificate(db.r.QueryRowContext(ctx, `SELECT `+certColumns+` FROM morango_certificate WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, withHint(fmt.Errorf("certificate %s: %w", id, ErrUnknownCertificate), "list this device's certificates with 'morango cert list'")
	}
	if err != nil {
		return nil, fmt.Errorf("read certificate %s: %w", id, err)
	}
	return s, nil
}

// Certificates lists the stored certificates, roots first.
func (db *DB) Certificates(ctx context.Context) ([]*StoredCertificate, error) {
	r, err := db.r.QueryContext(ctx, `SELECT `+certColumns+` FROM morango_certificate ORDER BY parent_id IS NOT NULL, added_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list certificates: %w", err)
	}
	defer r.Close()
	var l []*StoredCertificate
	for r.Next() {
		s, err := scanCertificate(r)
		if err != nil {
			return nil, err
		}
		l = append(l, s)
	}
	return l, r.Err()
}

// Chain returns the chain of a stored certificate, root first.
func (db *DB) Chain(ctx context.Context, id string) ([]certs.Link, error) {
	var chain []certs.Link
	for cur := id; cur != ""; {
		if len(chain) > certs.MaxChainLength {
			return nil, fmt.Errorf("chain of %s is longer than %d", id, certs.MaxChainLength)
		}
		s, err := db.Certificate(ctx, cur)
		if err != nil {
			return nil, err
		}
		chain = append([]certs.Link{s.Link}, chain...)
		cur = s.ParentID
	}
	return chain, nil
}

// FirstOwnCertificate returns the id of the certificate whose private key
// this device has held the longest (the first stored), or "" if it holds
// none.
func (db *DB) FirstOwnCertificate(ctx context.Context) (string, error) {
	var id string
	err := db.r.QueryRowContext(ctx, `SELECT id FROM morango_certificate WHERE coalesce(private_key, '') <> ''
		ORDER BY added_at, id LIMIT 1`).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read certificates: %w", err)
	}
	return id, nil
}

// Trusted reports whether id is a trusted root on this device.
func (db *DB) Trusted(ctx context.Context, id string) (bool, error) {
	var t bool
	err := db.r.QueryRowContext(ctx, `SELECT trusted FROM morango_certificate WHERE id = ? AND parent_id IS NULL`, id).Scan(&t)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return t, err
}

// SaveRequest keeps the key pair of a certificate request until the granted
// certificate is imported.
func (db *DB) SaveRequest(ctx context.Context, publicKey, scope, params, privateKeyPEM string) error {
	if err := db.protectKeyFiles(); err != nil {
		return err
	}
	return db.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO morango_certrequest (public_key, scope_definition_id, scope_params, private_key, created_at)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`, publicKey, scope, params, privateKeyPEM, now())
		if err != nil {
			return fmt.Errorf("save certificate request: %w", err)
		}
		return nil
	})
}

// RequestKey returns the private key of a pending request for publicKey, or
// "" if this device made no such request.
func (db *DB) RequestKey(ctx context.Context, publicKey string) (string, error) {
	var key string
	err := db.r.QueryRowContext(ctx, `SELECT private_key FROM morango_certrequest WHERE public_key = ?`, publicKey).Scan(&key)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return key, err
}

// HeldScope is what a certificate whose private key this device holds
// grants.
type HeldScope struct {
	Root  string // the id of the root of its chain
	Scope certs.Scope
}

// HeldScopes returns the scopes of the certificates this device holds the
// private keys of, each verified down its chain; held reports whether it
// holds any such key. A certificate whose chain cannot be read or does not
// verify grants nothing.
func (db *DB) HeldScopes(ctx context.Context) (scopes []HeldScope, held bool, err error) {
	scopes, held, _, err = db.heldScopes(ctx)
	return scopes, held, err
}

// UnverifiedCertificates returns, by id, why each certificate whose private
// key this device holds but whose chain does not verify (with the installed
// profile) grants nothing.
func (db *DB) UnverifiedCertificates(ctx context.Context) (map[string]error, error) {
	_, _, broken, err := db.heldScopes(ctx)
	return broken, err
}

// heldScopes is HeldScopes, with why each certificate that grants nothing
// does not verify, by id.
func (db *DB) heldScopes(ctx context.Context) (scopes []HeldScope, held bool, broken map[string]error, err error) {
	all, err := db.Certificates(ctx)
	if err != nil {
		return nil, false, nil, err
	}
	for _, sc := range all {
		if sc.PrivateKey == "" {
			continue
		}
		held = true
		s, root, err := db.verifiedScope(ctx, sc.Link.ID)
		if err != nil {
			if broken == nil {
				broken = map[string]error{}
			}
			broken[sc.Link.ID] = err
			continue
		}
		scopes = append(scopes, HeldScope{Root: root, Scope: s})
	}
	return scopes, held, broken, nil
}

// verifiedScope verifies the chain of certificate id and returns its scope
// and the id of its root.
func (db *DB) verifiedScope(ctx context.Context, id string) (certs.Scope, string, error) {
	chain, err := db.Chain(ctx, id)
	if err != nil {
		return certs.Scope{}, "", err
	}
	verified, err := certs.VerifyChain(chain, db.profile)
	if err != nil {
		return certs.Scope{}, "", err
	}
	s, err := verified[len(verified)-1].Scope(db.profile)
	return s, chain[0].ID, err
}

// writeScope is what this device may write, under every root. held is
// false when the device holds no private key of a certificate: its rights
// are not known here (a database synced by other means than certificates).
func (db *DB) writeScope(ctx context.Context) (w certs.Filter, held bool, err error) {
	each, held, err := db.writeScopes(ctx)
	for _, f := range each {
		w = append(w, f...)
	}
	return w, held, err
}

// writeScopes is what this device may write with each of its
// certificates: a bundle is signed by one, and what it carries must lie
// within that one's write scope.
func (db *DB) writeScopes(ctx context.Context) (each []certs.Filter, held bool, err error) {
	scopes, held, err := db.HeldScopes(ctx)
	for _, s := range scopes {
		each = append(each, s.Scope.Write)
	}
	return each, held, err
}
