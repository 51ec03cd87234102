package session

import (
	"bufio"
	"context"
	"crypto/rsa"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/morango-sync/morango/bundle"
	"github.com/morango-sync/morango/certs"
	"github.com/morango-sync/morango/store"
)

// ManifestOptions configure a manifest.
type ManifestOptions struct {
	CertID string
	// Filter narrows the partitions the manifest speaks for; empty: the
	// certificate's read scope.
	Filter []string
	// Name is a free device name shown to people. A name given once is
	// kept (store.DB.SetDeviceName): empty means the name given last.
	Name string
}

// WriteManifest writes, atomically, a signed manifest saying who this device
// is and what it holds under its certificate's read scope, so that a peer
// exports only what it lacks and may read. It serializes the app's changes
// first, so that the peer does not send back versions this device writes
// next. Before that, the folder the manifest goes to (a stick, where the
// peers' manifests are) is read for signs that the database was restored
// from a backup (see renewFromFolder): its versions must not reuse
// counters the peers hold.
func WriteManifest(ctx context.Context, db *store.DB, fs bundle.FS, path string, opts ManifestOptions) (*bundle.Manifest, error) {
	signer, chain, scope, err := ownCertificate(ctx, db, opts.CertID)
	if err != nil {
		return nil, err
	}
	if fs == nil {
		fs = bundle.OSFS{}
	}
	if _, err := renewFromFolder(ctx, db, fs, filepath.Dir(path), nil); err != nil {
		return nil, err
	}
	if _, err := db.Serialize(ctx); err != nil {
		return nil, err
	}
	return writeManifest(ctx, db, fs, path, opts, signer, chain, scope)
}

// writeManifest writes the manifest of what the store holds now, signed
// with signer (whose chain and scope ownCertificate gave), to path on fs.
func writeManifest(ctx context.Context, db *store.DB, fs bundle.FS, path string, opts ManifestOptions,
	signer *certs.Certificate, chain []certs.Link, scope certs.Scope) (*bundle.Manifest, error) {
	filter := scope.Read
	if len(opts.Filter) > 0 {
		filter = filter.Intersect(certs.Filter(opts.Filter))
	}
	holdings, err := db.FSIC(ctx, filter)
	if err != nil {
		return nil, err
	}
	in, err := db.Instance(ctx)
	if err != nil {
		return nil, err
	}
	// A name given once stays the device's name.
	name := opts.Name
	if name != "" {
		err = db.SetDeviceName(ctx, name)
	} else {
		name, err = db.DeviceName(ctx)
	}
	if err != nil {
		return nil, err
	}
	m := &bundle.Manifest{
		Profile:  db.Profile().Name,
		Created:  time.Now().UTC().Format(time.RFC3339),
		Instance: in.ID,
		CertID:   signer.ID,
		Chain:    chain,
		Filter:   filter,
		FSIC:     holdings,
		Name:     name,
	}
	err = bundle.WriteFileChecked(fs, path, func(w io.Writer) error {
		return bundle.WriteManifest(w, m, signer.PrivateKey)
	}, func(tmp string) error {
		// Read back, as a bundle is: a manifest the stick damaged would
		// replace a good one, and every peer would refuse it.
		if err := readBackManifest(fs, tmp, &signer.PrivateKey.PublicKey); err != nil {
			return hinted(fmt.Errorf("reading back %s: %w", path, err), "the stick may be failing: write the manifest again, or to another stick")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// readBackManifest reads a manifest just written and verifies it with the
// key that signed it.
func readBackManifest(fs bundle.FS, name string, key *rsa.PublicKey) error {
	f, err := fs.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = bundle.ReadManifest(bufio.NewReader(f), &bundle.ReaderOptions{
		VerifyManifest: func(*bundle.Manifest) (*rsa.PublicKey, error) { return key, nil }})
	return err
}
