package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/morango-sync/morango/bundle"
)

// bundleSize measures the bundle at path against zstd of its records'
// serialized JSON alone, one record a line, in the bundle's order.
func bundleSize(path string, a *device) (BundleSize, error) {
	var s BundleSize
	fi, err := os.Stat(path)
	if err != nil {
		return s, err
	}
	s.Bytes = fi.Size()
	f, err := os.Open(path)
	if err != nil {
		return s, err
	}
	defer f.Close()
	r, err := bundle.NewReader(bufio.NewReaderSize(f, 1<<16), &bundle.ReaderOptions{Unverified: true})
	if err != nil {
		return s, err
	}
	var def, fast counter
	encDef, err := zstd.NewWriter(&def, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return s, err
	}
	encFast, err := zstd.NewWriter(&fast, zstd.WithEncoderLevel(bundle.DefaultLevel), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return s, err
	}
	w := io.MultiWriter(encDef, encFast)
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return s, err
		}
		s.Records++
		n, err := io.WriteString(w, rec.Serialized+"\n")
		if err != nil {
			return s, err
		}
		s.JSONBytes += int64(n)
	}
	if err := encDef.Close(); err != nil {
		return s, err
	}
	if err := encFast.Close(); err != nil {
		return s, err
	}
	s.ZstdJSONBytes, s.ZstdFastestJSONBytes = def.n, fast.n
	if s.Records > 0 {
		s.BytesPerRecord = float64(s.Bytes) / float64(s.Records)
	}
	if m := min(def.n, fast.n); m > 0 {
		s.Ratio = float64(s.Bytes) / float64(m)
	}
	return s, nil
}

type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// converged checks that B's app tables hold what A's hold: the same rows
// in every table, and the same aggregate of the columns the 1% change
// touches.
func converged(ctx context.Context, a, b *device, tables []string) error {
	ca, _, err := countRows(ctx, a.app, tables)
	if err != nil {
		return err
	}
	cb, _, err := countRows(ctx, b.app, tables)
	if err != nil {
		return err
	}
	for _, t := range tables {
		if ca[t] != cb[t] {
			return fmt.Errorf("B holds %d rows of %s, A %d", cb[t], t, ca[t])
		}
	}
	checks := []string{
		`SELECT count(*) || '/' || total(progress) || '/' || max(end_time) FROM contentsessionlog`,
		`SELECT count(*) || '/' || total(progress) || '/' || total(time_spent) || '/' || max(modified) FROM contentsummarylog`,
		`SELECT count(*) || '/' || total(length(full_name)) FROM facilityuser`,
	}
	for _, q := range checks {
		var x, y string
		if err := a.app.QueryRowContext(ctx, q).Scan(&x); err != nil {
			return err
		}
		if err := b.app.QueryRowContext(ctx, q).Scan(&y); err != nil {
			return err
		}
		if x != y {
			return fmt.Errorf("B differs from A: %s: %s against %s", strings.Fields(q)[len(strings.Fields(q))-1], y, x)
		}
	}
	return nil
}
