package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteJSON writes the report as indented JSON.
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report as a table for people.
func WriteTable(w io.Writer, r *Report) error {
	runs := "1 run"
	if r.Runs > 1 {
		runs = fmt.Sprintf("median of %d runs", r.Runs)
	}
	fmt.Fprintf(w, "morango bench: %d records of the school app (%d app rows), %s\n", r.Records, r.Rows, runs)
	fmt.Fprintf(w, "%s %s/%s, %d CPUs (GOMAXPROCS %d), SQLite %s (%s), pages of %d bytes\n\n",
		r.Env.GoVersion, r.Env.OS, r.Env.Arch, r.Env.CPUs, r.Env.GOMAXPROCS, r.Env.SQLiteVersion, r.Env.Driver, r.Env.PageSize)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "stage\trecords\tseconds\trecords/s\t× floor\tCPU s\tCPU × floor\tGo heap MiB\tRSS MiB\tprivate MiB\t")
	for _, s := range r.Stages {
		rate := "-"
		if s.RecordsPerSecond > 0 {
			rate = fmt.Sprintf("%.0f", s.RecordsPerSecond)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%.3f\t%s\t%.3f\t%.1f\t%.1f\t%.1f\t\n", s.Name, s.Records, secs(s.Seconds), rate, s.FloorRatio,
			secs(s.CPUSeconds), s.CPUFloorRatio, float64(s.HeapPeakBytes)/mib, float64(s.RSSPeakBytes)/mib, float64(s.PrivatePeakBytes)/mib)
		for _, p := range s.Parts {
			fmt.Fprintf(tw, "  %s\t\t%s\t\t\t\t\t\t\t\t\n", p.Name, secs(p.Seconds))
		}
	}
	fmt.Fprintf(tw, "end to end (serialize+export+import)\t%d\t%s\t%.0f\t%.3f\t\t\t\t\t\t\n", r.Records, secs(r.EndToEndSeconds),
		float64(r.Records)/r.EndToEndSeconds, r.EndToEndRatio)
	if err := tw.Flush(); err != nil {
		return err
	}

	for _, s := range r.Stages {
		if len(s.Statements) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s: the store's longest statements and steps (first run)\n", s.Name)
		for _, t := range s.Statements {
			fmt.Fprintf(w, "  %8s s %8d×  %s\n", secs(t.Seconds), t.Runs, t.Statement)
		}
	}

	b := r.Bundle
	fmt.Fprintf(w, "\nbundle: %d bytes, %.1f bytes/record; serialized JSON alone: %.1f bytes/record, zstd -3 %.1f, zstd fastest %.1f; bundle / zstd JSON = %.3f\n",
		b.Bytes, b.BytesPerRecord, per(b.JSONBytes, b.Records), per(b.ZstdJSONBytes, b.Records), per(b.ZstdFastestJSONBytes, b.Records), b.Ratio)
	fmt.Fprintf(w, "peak memory of any sync stage: RSS %.1f MiB (SQLite caches and mapped files included), private %.1f MiB, Go heap %.1f MiB\n",
		float64(r.PeakRSSBytes)/mib, float64(r.PeakPrivateBytes)/mib, float64(r.PeakHeapBytes)/mib)

	fmt.Fprintf(w, "\ntargets (set for %d records):\n", 1_000_000)
	for _, t := range r.Targets {
		mark := "met"
		if !t.Met {
			mark = "MISSED"
		}
		fmt.Fprintf(w, "  %-62s %8.3f %-8s (limit %g)  %s\n", t.Name, t.Measured, t.Unit, t.Limit, mark)
	}
	return nil
}

func per(n, records int64) float64 {
	if records == 0 {
		return 0
	}
	return float64(n) / float64(records)
}

// secs formats seconds with three significant decimals below a second.
func secs(s float64) string {
	switch {
	case s < 0.01:
		return strings.TrimRight(fmt.Sprintf("%.4f", s), " ")
	case s < 10:
		return fmt.Sprintf("%.3f", s)
	}
	return fmt.Sprintf("%.1f", s)
}
