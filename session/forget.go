package session

import (
	"bufio"
	"errors"
	"fmt"
	iofs "io/fs"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/morango-sync/morango/bundle"
)

// Forget removes from the exchange folder dir the manifests of the device
// who names (its instance id, a prefix of it of at least 8 characters, or
// the name its manifest gives; one manifest per certificate it signs
// with), and the bundles written for it: devices
// then stop writing bundles for a device that is gone (a tablet lost, or a
// database moved to another machine, which syncs as a new device). The
// bundles it wrote stay, as others may still lack what they hold. A device
// forgotten by mistake writes its manifest again at its next exchange,
// and gets its bundles from the visits after. It returns the device's
// instance id and the files removed.
func Forget(fs bundle.FS, dir, who string) (string, []string, error) {
	if fs == nil {
		fs = bundle.OSFS{}
	}
	names, err := fs.ReadDir(dir)
	if err != nil {
		return "", nil, hinted(fmt.Errorf("read %s: %w", dir, err), "check that the stick is mounted and the folder exists")
	}
	sort.Strings(names)
	var matches, known []string
	for _, n := range names {
		stem, ok := strings.CutSuffix(n, manifestSuffix)
		if !ok || hiddenFile(n) {
			continue
		}
		// A device that holds several certificates has a manifest for
		// each: it is one device.
		id := instanceOf(stem)
		name := manifestName(fs, filepath.Join(dir, n))
		if d := describePeer(id, name); !slices.Contains(known, d) {
			known = append(known, d)
		}
		if (id == who || len(who) >= 8 && strings.HasPrefix(id, who) || name != "" && name == who) && !slices.Contains(matches, id) {
			matches = append(matches, id)
		}
	}
	switch {
	case len(matches) == 0:
		return "", nil, hinted(fmt.Errorf("no device %q has a manifest in %s", who, dir),
			"name a device by its instance id, 8 or more of its first characters, or its name; the folder holds: %s", listOr(known))
	case len(matches) > 1:
		return "", nil, hinted(fmt.Errorf("%q names %d devices in %s", who, len(matches), dir),
			"give more of the instance id; the folder holds: %s", listOr(known))
	}
	removed, err := removePeer(fs, dir, names, matches[0])
	return matches[0], removed, err
}

// removePeer removes, of the files names in dir, the manifests of the
// device id (one per certificate it signs with) and the bundles written
// for it, and returns those removed. The bundles it wrote stay: others may
// still lack what they hold.
func removePeer(fs bundle.FS, dir string, names []string, id string) ([]string, error) {
	var removed []string
	for _, n := range names {
		stem, ok := strings.CutSuffix(n, manifestSuffix)
		if !ok {
			_, stem, ok = bundleEnds(n)
		}
		if !ok || instanceOf(stem) != id {
			continue
		}
		if err := fs.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, iofs.ErrNotExist) {
			return removed, err
		}
		removed = append(removed, n)
	}
	return removed, nil
}

// manifestName is the device name a manifest gives, "" if it gives none or
// cannot be read.
func manifestName(fs bundle.FS, path string) string {
	f, err := fs.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	m, err := bundle.ReadManifest(bufio.NewReader(f), &bundle.ReaderOptions{HeaderOnly: true})
	if err != nil {
		return ""
	}
	return m.Name
}

func describePeer(id, name string) string {
	if name == "" {
		return id
	}
	return fmt.Sprintf("%s (%s)", id, name)
}

func listOr(l []string) string {
	if len(l) == 0 {
		return "no manifest"
	}
	return strings.Join(l, ", ")
}
