package session

import (
	"bufio"
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/morango-sync/morango/bundle"
	"github.com/morango-sync/morango/certs"
	"github.com/morango-sync/morango/fsic"
	"github.com/morango-sync/morango/ids"
	"github.com/morango-sync/morango/store"
)

// File names on the stick.
const (
	manifestSuffix = ".manifest"
	bundleSuffix   = ".bundle"
)

// ManifestName is the file name of a device's manifest in an exchange folder.
// stem is the device's instance id, or for a certificate other than the
// first the device holds a key of, the instance id and the certificate's
// id (see fileStem).
func ManifestName(stem string) string { return stem + manifestSuffix }

// certSeparator separates, in the stem of a file name, the instance id
// from the id of the certificate its files are signed with.
const certSeparator = "_"

// fileStem returns the stem of the names of the files a device writes
// with certificate cert: its manifest and its bundles. With the first
// certificate it held a key of, its instance id; with another, the
// instance id and the certificate's id. A device that holds several (a
// tablet shared by two learners) runs one visit per certificate, each
// with a manifest saying what that certificate may read and bundles
// holding what it may write: under one name, each visit would replace the
// files of the one before, and the peers would see only the last.
func fileStem(ctx context.Context, db *store.DB, instance, cert string) (string, error) {
	first, err := db.FirstOwnCertificate(ctx)
	if err != nil || first == cert {
		return instance, err
	}
	return instance + certSeparator + cert, nil
}

// instanceOf returns the instance id of the stem of a file name.
func instanceOf(stem string) string {
	in, _, _ := strings.Cut(stem, certSeparator)
	return in
}

// manifestInstance returns the instance id of the device whose manifest
// is named n (ManifestName).
func manifestInstance(n string) string {
	return instanceOf(strings.TrimSuffix(n, manifestSuffix))
}

// bundleEnds returns the stems of the writer and of the recipient of a
// bundle named n (BundleName), ok false if n is not a bundle's name.
func bundleEnds(n string) (from, to string, ok bool) {
	stem, ok := strings.CutSuffix(n, bundleSuffix)
	if !ok {
		return "", "", false
	}
	return strings.Cut(stem, "-to-")
}

// writtenName reports whether n is a name the writer of the bundle whose
// header is h, addressed to a device, gives it (BundleName): the sender's
// instance id, then the recipient's, each alone or followed by the id of
// the certificate in the header (fileStem).
func writtenName(n string, h *bundle.Header) bool {
	from, to, ok := bundleEnds(n)
	if !ok {
		return false
	}
	stem := func(s, instance, cert string) bool {
		return s == instance || cert != "" && s == instance+certSeparator+cert
	}
	return stem(from, h.SenderInstance, h.SenderCert) && stem(to, h.RecipientInstance, h.RecipientCert)
}

// BundleName is the file name of a bundle from one device to another.
func BundleName(from, to string) string {
	if to == "" {
		to = "anyone"
	}
	return from + "-to-" + to + bundleSuffix
}

// ExchangeOptions configure a visit.
type ExchangeOptions struct {
	CertID   string
	Name     string // this device's name, written into its manifest
	FS       bundle.FS
	Observer Observer
}

// FileResult is what an exchange did with one file.
type FileResult struct {
	File   string        `json:"file"`
	Action string        `json:"action"` // imported, skipped, failed, interrupted, exported, removed, up to date, retired, wrote manifest
	Reason string        `json:"reason,omitempty"`
	Import *ImportResult `json:"import,omitempty"`
	Export *ExportResult `json:"export,omitempty"`
	Peer   string        `json:"peer,omitempty"`
	// PeerName is the name the peer (the recipient of an export, the
	// writer of an import) gave itself with --name, as its manifest in
	// the folder says, or "".
	PeerName string `json:"peer_name,omitempty"`
	Records  int64  `json:"records"`
	// Note is a remark for the person, such as what to do about a peer
	// that may be this database's own earlier identity.
	Note string `json:"note,omitempty"`
	// Hint says what to do about a file that failed, when the failure
	// tells.
	Hint string `json:"hint,omitempty"`
}

// fail records that the file failed with err, and what to do about it.
func (fr *FileResult) fail(err error) {
	fr.Action, fr.Reason = "failed", err.Error()
	var h interface{ Hint() string }
	if errors.As(err, &h) {
		fr.Hint = h.Hint()
	}
}

// namedRecipient returns the instance a bundle's file name, as BundleName
// writes it (with or without certificates' ids), addresses the bundle to,
// or "" for any other name (one for anyone included).
func namedRecipient(n string) string {
	from, to, ok := bundleEnds(n)
	if !ok || !validStem(from) || !validStem(to) {
		return ""
	}
	return instanceOf(to)
}

// validStem reports whether stem is a stem fileStem gives: an instance id,
// alone or followed by a certificate's id.
func validStem(stem string) bool {
	in, cert, two := strings.Cut(stem, certSeparator)
	return ids.Valid(in) && (!two || ids.Valid(cert))
}

// headerFailed says what to do about a bundle in an exchange folder whose
// header could not be read, as an import of it does.
func headerFailed(err error) error {
	if isFormatError(err) {
		return hinted(err, "the file is damaged or not a bundle; the device that wrote it writes it anew at its next exchange (or export)")
	}
	return hinted(err, "reading the stick failed (was it pulled out?); nothing was written: put it back and run the exchange again")
}

// ExchangeResult lists what an exchange did, file by file.
type ExchangeResult struct {
	Instance string        `json:"instance"`
	Files    []*FileResult `json:"files"`
	// Retried is set when no bundle was imported and records were waiting
	// to go into the app: what trying them again did.
	Retried *store.DeserializeResult `json:"retried,omitempty"`
	// RetryError says why that retry failed. It wrote nothing, and the
	// exchange went on.
	RetryError string `json:"retry_error,omitempty"`
	// Failed counts files that could not be imported or written, and a
	// retry of the waiting records that failed.
	Failed int `json:"failed"`
	// Renewed holds this database's former instance id when a peer's
	// manifest showed the database older than versions the peers hold of
	// it (restored from a backup): it took a new instance (see
	// store.DB.RenewIfOlder).
	Renewed string `json:"renewed,omitempty"`
	// Unsynced counts this device's app changes that could not become
	// versions (outside its write scope, an id the profile does not allow,
	// …): no peer receives them until they are fixed. Status says why.
	Unsynced int64 `json:"unsynced"`
}

// otherFacility says why a file whose certificate chain is valid but roots
// in a root this device does not trust is skipped: a stick may serve the
// devices of several facilities, each of which sees only its own.
const otherFacility = "a device of another facility (its certificates root in one this device does not trust)"

// Exchange is the one-command visit with a shared folder such as a USB
// stick: it imports every bundle in dir addressed to this device (or to
// anyone) that it has not applied yet, then writes this device's manifest,
// and a bundle for each other device whose manifest is in dir, holding what
// that device lacks and may read. Running it in turn on several devices with
// one stick moves everything everyone may see. A file that fails (tampered,
// untrusted, truncated) is reported and skipped; the others go on.
func Exchange(ctx context.Context, db *store.DB, dir string, opts ExchangeOptions) (*ExchangeResult, error) {
	fs := opts.FS
	if fs == nil {
		fs = bundle.OSFS{}
	}
	in, err := db.Instance(ctx)
	if err != nil {
		return nil, err
	}
	// The certificate must be usable before anything is touched.
	signer, chain, scope, err := ownCertificate(ctx, db, opts.CertID)
	if err != nil {
		return nil, err
	}
	names, err := fs.ReadDir(dir)
	if err != nil {
		return nil, hinted(fmt.Errorf("read %s: %w", dir, err), "check that the stick is mounted and the folder exists")
	}
	sort.Strings(names)
	// Before anything is serialized: a database restored from a backup
	// takes a new instance, or its next versions would reuse counters.
	former := in.ID
	signs, err := renewFromFolder(ctx, db, fs, dir, names)
	if err != nil {
		return nil, err
	}
	in = signs.in
	res := &ExchangeResult{Instance: in.ID}
	if in.ID != former {
		res.Renewed = former
	}
	var bundles, manifests []string
	now := time.Now()
	for _, n := range names {
		switch {
		case hiddenFile(n) && !bundle.IsTemp(n):
			continue
		case strings.HasSuffix(n, bundleSuffix):
			bundles = append(bundles, n)
		case strings.HasSuffix(n, manifestSuffix):
			manifests = append(manifests, n)
		case bundle.IsTemp(n):
			// Never a valid file; but it may be another process's write
			// in progress (another device exchanging through this folder
			// at the same time), which removing it would make fail.
			path := filepath.Join(dir, n)
			if !ownTemp(n, in.ID, res.Renewed) && !bundle.StaleTemp(fs, path, now) {
				continue
			}
			if err := fs.Remove(path); err == nil {
				res.Files = append(res.Files, &FileResult{File: n, Action: "removed", Reason: "unfinished write"})
			}
		}
	}

	// A bundle addressed to this device, once applied, is removed by its
	// writer when it sees this device's manifest, under the name it wrote
	// it; one whose writer's manifest is no longer here (forgotten, or an
	// identity its database left), or under another name (renamed, or a
	// copy a person made beside it), nobody else would remove. stale says
	// why this device removes it, or "".
	stale := func(n string, h *bundle.Header, own bool) string {
		switch {
		case own || !signs.self[h.RecipientInstance]:
			return ""
		case !slices.ContainsFunc(manifests, func(m string) bool {
			return manifestInstance(m) == h.SenderInstance
		}):
			return "its writer no longer visits this folder"
		case !writtenName(n, h):
			return "its writer replaces and removes only the name it gave it"
		}
		return ""
	}
	// peerName is the name a device gave itself, from its manifests here.
	peerNames := map[string]string{}
	peerName := func(instance string) string {
		if name, ok := peerNames[instance]; ok {
			return name
		}
		for _, m := range manifests {
			if manifestInstance(m) == instance {
				if peerNames[instance] = manifestName(fs, filepath.Join(dir, m)); peerNames[instance] != "" {
					break
				}
			}
		}
		return peerNames[instance]
	}
	imported := false
	for _, n := range bundles {
		fr := &FileResult{File: n}
		res.Files = append(res.Files, fr)
		path := filepath.Join(dir, n)
		rh, read := signs.headers[n]
		if !read {
			rh.h, rh.err = readBundleHeader(fs, path)
		}
		h, err := rh.h, rh.err
		if from, _, _ := bundleEnds(n); err != nil && instanceOf(from) == in.ID {
			// This device's own, damaged on the stick: the export below
			// writes it anew (or removes it, if the peer lacks nothing).
			fr.Action, fr.Reason = "skipped", "written by this device, and damaged: "+err.Error()
			continue
		}
		if err != nil {
			if to := namedRecipient(n); to != "" && !signs.self[to] {
				// Unreadable, so no device can import it, and its name
				// says it is for another: that device's exchange reports
				// it, and its writer's writes it anew.
				fr.Action, fr.Reason = "skipped", "addressed to another device by its name, and damaged: "+err.Error()
				continue
			}
			fr.fail(headerFailed(err))
			res.Failed++
			continue
		}
		// This database's own: signed as its current instance or as one
		// it had before it was renewed, in this run or an earlier one.
		own := signs.self[h.SenderInstance]
		if own && !signs.ahead[h.TransferID] {
			fr.Action, fr.Reason = "skipped", "written by this device"
			continue
		}
		// One of its own that holds versions the file lacks was written by
		// a later state of this file, since restored from a backup: it
		// holds work done after the backup, which may be on no other
		// device. It is imported (its counters made this database take a
		// new instance first, and are not claimed). One addressed to an
		// earlier instance of this database holds what it lacked then: it
		// is imported as one for another device is (its counters are not
		// claimed).
		if !own && h.RecipientInstance != "" && !signs.self[h.RecipientInstance] {
			fr.Action, fr.Reason = "skipped", "addressed to another device"
			continue
		}
		if ok, err := db.AppliedBundle(ctx, h.TransferID); err != nil {
			if ctx.Err() != nil {
				fr.Action, fr.Reason = "interrupted", "nothing of it was applied"
				return res, fmt.Errorf("%s: %w", fr.File, ctx.Err())
			}
			return nil, err
		} else if ok {
			fr.Action, fr.Reason = "skipped", "already applied"
			if why := stale(n, h, own); why != "" && fs.Remove(path) == nil {
				fr.Action, fr.Reason = "removed", "applied here, and "+why
			}
			continue
		}
		r, err := Import(ctx, db, &DiskConnection{FS: fs, Bundle: path}, ImportOptions{Observer: opts.Observer})
		if err != nil {
			if ctx.Err() != nil {
				// Stopped before its commit (nothing applied), or after it,
				// in the bookkeeping the next run completes.
				fr.Action, fr.Reason = "interrupted", "nothing of it was applied"
				if ok, _ := db.AppliedBundle(context.WithoutCancel(ctx), h.TransferID); ok {
					fr.Reason = "applied; the bookkeeping after it is completed by the next run"
				}
				return res, fmt.Errorf("%s: %w", fr.File, ctx.Err())
			}
			if errors.Is(err, ErrUntrustedRoot) {
				fr.Action, fr.Reason = "skipped", otherFacility
				continue
			}
			fr.fail(err)
			res.Failed++
			continue
		}
		fr.Action, fr.Import, fr.Records = "imported", r, r.Store.Received
		fr.PeerName = peerName(h.SenderInstance)
		imported = true
		if why := stale(n, h, own); why != "" && fs.Remove(path) == nil {
			fr.Reason = "removed: " + why
		}
	}
	// An import of a bundle this database wrote before a restore renews
	// its instance.
	if cur, err := db.Instance(ctx); err != nil {
		return res, err
	} else if cur.ID != in.ID {
		if res.Renewed == "" {
			res.Renewed = in.ID
		}
		in, res.Instance = cur, cur.ID
	}
	// Every import tries the records that wait, pending, again. Without
	// one, the app may still have removed what stood in their way since.
	// A retry that fails (the app refuses a deletion, say) is reported like
	// a file that fails: what the device has to send still goes out.
	if !imported {
		r, tried, err := db.RetryPending(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return res, fmt.Errorf("retry rows waiting for the app: %w", ctx.Err())
		case err != nil:
			res.RetryError = err.Error()
			res.Failed++
		case tried:
			res.Retried = &r
		}
	}

	// The manifest says what this device holds, its own changes made
	// since the last serialization included: the exports below serialize
	// them, and a peer reading an older count would send them back.
	sr, err := db.Serialize(ctx)
	if err != nil {
		return res, err
	}
	res.Unsynced = sr.Failed
	stem, err := fileStem(ctx, db, in.ID, signer.ID)
	if err != nil {
		return res, err
	}
	mpath := filepath.Join(dir, ManifestName(stem))
	if _, err := writeManifest(ctx, db, fs, mpath, ManifestOptions{CertID: opts.CertID, Name: opts.Name}, signer, chain, scope); err != nil {
		return res, err
	}
	res.Files = append(res.Files, &FileResult{File: ManifestName(stem), Action: "wrote manifest"})

	failedHere := func(n string) bool {
		return slices.ContainsFunc(res.Files, func(f *FileResult) bool { return f.File == n && f.Action == "failed" })
	}
	for _, n := range manifests {
		peer := strings.TrimSuffix(n, manifestSuffix)
		peerInstance := instanceOf(peer)
		if peerInstance == in.ID {
			// This device's, with this or another certificate. Another
			// certificate's that asks for nothing this one does not (a
			// learner's, once the tablet visits with a wider
			// certificate instead) would have the peers write bundles
			// for it at every visit, against holdings that no longer
			// change: it goes, with the bundles to it, which the imports
			// above have read.
			if peer != stem {
				if err := dropCovered(ctx, fs, dir, names, n, in.ID, scope.Read, failedHere, res); err != nil {
					return res, err
				}
			}
			continue
		}
		// This database's identity before it was moved: nobody will
		// import for it again, and every device would go on writing
		// bundles for it. Its manifests and the bundles to it go.
		former, was, err := db.FormerSelf(ctx, peerInstance)
		if err != nil {
			return res, err
		}
		if former {
			// A bundle to it whose import failed in this run stays, for
			// the next run to import (it is addressed to this database).
			if _, err := removePeer(fs, dir, slices.DeleteFunc(slices.Clone(names), failedHere), peerInstance); err != nil {
				return res, err
			}
			why := "this database before it moved from " + was
			if was == db.Path() {
				why = "this database's earlier identity in this file (renewed after a restore from a backup, or the file moved away and back)"
			}
			res.Files = append(res.Files, &FileResult{File: n, Peer: peer, Action: "retired", Reason: why})
			continue
		}
		fr := &FileResult{File: BundleName(stem, peer), Peer: peer, PeerName: peerName(peerInstance)}
		// An earlier identity of this database whose file may be a copy
		// still in use (this machine's ids are not known, or the file is
		// still there): the person knows which.
		if was, ok, err := db.EarlierIdentity(ctx, peerInstance); err != nil {
			return res, err
		} else if ok {
			fr.Note = fmt.Sprintf("this database had that identity at %s: if the file was moved here rather than copied, "+
				"the device is gone; stop writing bundles for it with: morango forget %s %s", was, dir, peerInstance)
		}
		bpath := filepath.Join(dir, fr.File)
		conn := &DiskConnection{FS: fs, Bundle: bpath, Manifest: filepath.Join(dir, n)}
		r, err := Export(ctx, db, conn, ExportOptions{CertID: opts.CertID, Observer: opts.Observer, SkipEmpty: true})
		if err != nil {
			if ctx.Err() != nil {
				return res, fmt.Errorf("%s: %w", fr.File, ctx.Err())
			}
			if errors.Is(err, ErrUntrustedRoot) {
				fr.File, fr.Action, fr.Reason = n, "skipped", otherFacility
				res.Files = append(res.Files, fr)
				continue
			}
			fr.fail(err)
			res.Failed++
			res.Files = append(res.Files, fr)
			continue
		}
		fr.Export, fr.Records = r, r.Records
		if r.Records == 0 {
			// The peer has everything: an older bundle to it is obsolete.
			fr.Action, fr.Reason = "removed", "peer has everything"
			if err := fs.Remove(bpath); errors.Is(err, iofs.ErrNotExist) {
				fr.Action, fr.Reason = "up to date", ""
			} else if err != nil {
				return res, err
			}
		} else {
			fr.Action = "exported"
		}
		res.Files = append(res.Files, fr)
	}
	return res, nil
}

// dropCovered removes this device's manifest n, written with another
// certificate than the current visit's, and the bundles to it (of names,
// less those whose import failed), when what it asks for lies within
// read, what the manifest just written asks for: the peers send all of
// it for that one.
func dropCovered(ctx context.Context, fs bundle.FS, dir string, names []string, n, instance string,
	read certs.Filter, failed func(string) bool, res *ExchangeResult) error {
	p, err := (&DiskConnection{FS: fs, Manifest: filepath.Join(dir, n)}).Peer(ctx, nil)
	if err != nil || p == nil || p.Instance != instance || len(p.Filter) == 0 || !certs.Filter(p.Filter).IsSubsetOf(read) {
		return nil
	}
	stem := strings.TrimSuffix(n, manifestSuffix)
	for _, f := range names {
		if _, to, ok := bundleEnds(f); f != n && (!ok || to != stem || failed(f)) {
			continue
		}
		if err := fs.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, iofs.ErrNotExist) {
			return err
		}
		res.Files = append(res.Files, &FileResult{File: f, Action: "removed",
			Reason: "for this device's manifest of another certificate, whose partitions this one's holds"})
	}
	return nil
}

// ownTemp reports whether the temporary file named n is for this
// database's own manifest or one of its own bundles, under its instance id
// or former (its instance before a renewal, or ""): only a process using
// this database writes those, so one left on the stick is of an
// interrupted write of this device's, at any age. (A write of the same
// file by another command on this database at this very moment fails,
// saying so, and the exchange writes that file anew.)
func ownTemp(n, id, former string) bool {
	target, ok := bundle.TempTarget(n)
	if !ok {
		return false
	}
	stem, ok := strings.CutSuffix(target, manifestSuffix)
	if !ok {
		if stem, _, ok = bundleEnds(target); !ok {
			return false
		}
	}
	in := instanceOf(stem)
	return in != "" && (in == id || in == former)
}

// hiddenFile reports whether the file named n in an exchange folder is
// hidden (its name begins with a dot). Morango writes no bundle or
// manifest under such a name, only its temporary files (see
// bundle.IsTemp); other hidden files are the system's, such as the
// "._NAME" file a Mac writes beside each file it copies to a FAT or exFAT
// stick, and are left alone.
func hiddenFile(n string) bool { return strings.HasPrefix(n, ".") }

func readBundleHeader(fs bundle.FS, path string) (*bundle.Header, error) {
	f, err := fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := bundle.NewReader(bufio.NewReader(f), &bundle.ReaderOptions{HeaderOnly: true})
	if err != nil {
		return nil, err
	}
	return r.Header(), nil
}

// folderSigns is what renewFromFolder found in a folder.
type folderSigns struct {
	// in is the database's current instance, renewed if the folder showed
	// a restore.
	in *store.Instance
	// self holds this database's instances: the current one and its
	// earlier ones at this very file (see store.DB.EarlierInstances). A
	// bundle signed as one of them is its own; one addressed to one of
	// them is for it.
	self map[string]bool
	// ahead holds the transfer ids of the bundles there signed as one of
	// self that hold versions of their signer this file does not: written
	// by a later state of it, since restored from a backup. They may hold
	// work no other device has, and are imported, not skipped as its own.
	ahead map[string]bool
	// headers holds the header of each bundle there, or why it could not
	// be read, by file name: Exchange reads each once.
	headers map[string]bundleHeader
}

// bundleHeader is a bundle's header as readBundleHeader read it.
type bundleHeader struct {
	h   *bundle.Header
	err error
}

// renewFromFolder gives the database a new instance (see
// store.DB.RenewIfOlder) if the folder dir shows it was restored from a
// backup: a peer's manifest there, verified and trusted, holds versions of
// its current instance above its counter, or a bundle there signed as its
// own holds some (see ownBundleAhead). A file that cannot be read is left
// to the step that uses it to report. names lists dir (nil: it is read).
func renewFromFolder(ctx context.Context, db *store.DB, fs bundle.FS, dir string, names []string) (*folderSigns, error) {
	if names == nil {
		names, _ = fs.ReadDir(dir)
	}
	in, err := db.Instance(ctx)
	if err != nil {
		return nil, err
	}
	counters, err := db.EarlierInstances(ctx)
	if err != nil {
		return nil, err
	}
	counters[in.ID] = in.Counter
	s := &folderSigns{in: in, self: map[string]bool{}, ahead: map[string]bool{}, headers: map[string]bundleHeader{}}
	for id := range counters {
		s.self[id] = true
	}
	renewed := func() error {
		if s.in, err = db.Instance(ctx); err != nil {
			return err
		}
		s.self[s.in.ID], counters[s.in.ID] = true, s.in.Counter
		return nil
	}
	for _, n := range names {
		if hiddenFile(n) {
			continue
		}
		path := filepath.Join(dir, n)
		switch {
		case strings.HasSuffix(n, manifestSuffix):
			peer, err := (&DiskConnection{FS: fs, Manifest: path}).Peer(ctx, nil)
			if err != nil || peer == nil || peer.Holdings == nil {
				continue
			}
			pc, err := verifyTrusted(ctx, db, peer.Chain)
			if err != nil {
				continue
			}
			ps, err := pc.Scope(db.Profile())
			if err != nil {
				continue
			}
			ok, err := renewIfRestored(ctx, db, *peer.Holdings, ps.Read)
			if err != nil {
				return nil, err
			}
			if ok {
				if err := renewed(); err != nil {
					return nil, err
				}
			}
		case strings.HasSuffix(n, bundleSuffix):
			h, err := readBundleHeader(fs, path)
			s.headers[n] = bundleHeader{h, err}
			if err != nil || !s.self[h.SenderInstance] {
				continue
			}
			claimed, err := ownBundleAhead(ctx, db, fs, path, h, counters[h.SenderInstance])
			if err != nil {
				return nil, err
			}
			if claimed == 0 {
				continue
			}
			s.ahead[h.TransferID] = true
			if h.SenderInstance != s.in.ID {
				// An earlier instance's: the database was renewed already.
				continue
			}
			ok, err := db.RenewIfOlder(ctx, claimed)
			if err != nil {
				return nil, err
			}
			if ok {
				if err := renewed(); err != nil {
					return nil, err
				}
			}
		}
	}
	return s, nil
}

// ownBundleAhead returns the counter of its signer above counter, what
// this file holds of it, that the bundle at path (header h, signed as one
// of this database's instances) shows, or 0 if it shows none: a bundle
// this database wrote holds versions it lacks only if it was written by a
// later state of this file, since restored from a backup.
//
// One of a transfer the file does not know was written after the backup
// (its header is read unverified: a forgery only makes it renew). One of
// an export the file knows wrote its bundle (its Transferring stage
// completed) holds nothing above counter: the file recorded that after
// the bundle was written, at a counter at least the bundle's. Any other
// (an export the backup caught before or while it wrote the bundle, which
// then serialized versions the file lacks) is read whole, and its
// counters, verified with its signature, tell.
func ownBundleAhead(ctx context.Context, db *store.DB, fs bundle.FS, path string, h *bundle.Header, counter int64) (int64, error) {
	t, err := db.Transfer(ctx, h.TransferID)
	if err != nil {
		return 0, err
	}
	if t == nil {
		return counter + 1, nil
	}
	if exportWritten(t) {
		return 0, nil
	}
	// Imported here since (after the restore it showed): its versions are
	// here, and it need not be read whole at every exchange.
	if applied, err := db.AppliedBundle(ctx, h.TransferID); err != nil || applied {
		return 0, err
	}
	v, err := readVerifiedHeader(ctx, db, fs, path)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, nil // damaged or untrusted: the step that uses it reports it
	}
	if v.TransferID != h.TransferID || v.SenderInstance != h.SenderInstance {
		return 0, nil // replaced meanwhile
	}
	if c := claimedOf(v.FSIC, v.Filter, v.SenderInstance); c > counter {
		return c, nil
	}
	return 0, nil
}

// exportWritten reports whether transfer t, as this file recorded it, is
// an export that wrote its bundle: its Transferring stage completed.
func exportWritten(t *store.Transfer) bool {
	if !t.Push {
		return false
	}
	for _, st := range Stages {
		if st.String() == t.Stage {
			return st > Transferring || (st == Transferring && t.Status == string(Completed))
		}
	}
	return false
}

// readVerifiedHeader reads the bundle at path to its end and returns its
// header, counters included, once its digest and its signature, by a
// certificate whose chain roots in one this device trusts, are verified.
func readVerifiedHeader(ctx context.Context, db *store.DB, fs bundle.FS, path string) (*bundle.Header, error) {
	f, err := fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := bundle.NewReader(bufio.NewReaderSize(f, 1<<16), &bundle.ReaderOptions{Verify: func(h *bundle.Header) (*rsa.PublicKey, error) {
		c, err := verifyTrusted(ctx, db, h.Chain)
		if err != nil {
			return nil, err
		}
		if c.ID != h.SenderCert {
			return nil, fmt.Errorf("bundle names signer %s but its chain ends with %s", h.SenderCert, c.ID)
		}
		return c.PublicKey, nil
	}})
	if err != nil {
		return nil, err
	}
	for n := 0; ; n++ {
		_, err := r.Next()
		if err == io.EOF {
			return r.Header(), nil
		}
		if err != nil {
			return nil, err
		}
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
	}
}

// renewIfRestored gives the database a new instance if counters a peer
// signed claim versions of its current instance above its own counter.
// Only counters under partitions within (what the peer may read or, for a
// bundle, its filter) or above it (a writer's own counter, kept under "")
// are taken. A peer cannot hold versions elsewhere, and a claim there
// would only make this device renew for nothing.
func renewIfRestored(ctx context.Context, db *store.DB, v fsic.V2, within certs.Filter) (bool, error) {
	in, err := db.Instance(ctx)
	if err != nil {
		return false, err
	}
	return db.RenewIfOlder(ctx, claimedOf(v, within, in.ID))
}

// claimedOf returns the highest counter of instance id that v holds under
// partitions within, or above it (see renewIfRestored).
func claimedOf(v fsic.V2, within certs.Filter, id string) int64 {
	var claimed int64
	for _, ps := range []fsic.Partitions{v.Super, v.Sub} {
		for p, cs := range ps {
			if covers(within, p) {
				claimed = max(claimed, cs[id])
			}
		}
	}
	return claimed
}

// covers reports whether counters kept under partition p speak for a part
// of f: p lies under one of f's prefixes, or is a prefix of one.
func covers(f certs.Filter, p string) bool {
	if f.Contains(p) {
		return true
	}
	for _, q := range f {
		if strings.HasPrefix(q, p) {
			return true
		}
	}
	return false
}
