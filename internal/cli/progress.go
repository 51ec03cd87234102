package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/morango-sync/morango/session"
)

// progress renders transfer events: a bar on a terminal, plain lines
// otherwise, JSON lines with --json. It writes to stderr so that stdout
// stays the command's result.
type progress struct {
	mu       sync.Mutex
	w        io.Writer
	mode     string // "bar", "plain", "json", "quiet"
	barShown bool
}

func newProgress(w io.Writer, jsonOut, quiet bool) *progress {
	p := &progress{w: w, mode: "plain"}
	switch {
	case quiet:
		p.mode = "quiet"
	case jsonOut:
		p.mode = "json"
	case isTerminal(w):
		p.mode = "bar"
	}
	return p
}

func (p *progress) observer() session.Observer {
	if p.mode == "quiet" {
		return nil
	}
	return p.event
}

func (p *progress) event(e session.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	dir := "import"
	if e.Push {
		dir = "export"
	}
	switch p.mode {
	case "json":
		type jsonEvent struct {
			session.Event
			Stage     string `json:"stage"`
			Direction string `json:"direction"`
		}
		b, _ := json.Marshal(jsonEvent{e, e.Stage.String(), dir})
		fmt.Fprintf(p.w, "%s\n", b)
	case "plain":
		// A failure is left to the error the command prints.
		switch {
		case e.Kind == session.EventCompleted && e.Push && e.Stage == session.Transferring && e.Done > 0:
			// An export of nothing (a peer up to date) is said by the
			// command's result, not here.
			fmt.Fprintf(p.w, "export: wrote %s, %s\n", count(e.Done, "record"), byteSize(e.Bytes))
		case e.Kind == session.EventCompleted && !e.Push && e.Stage == session.Transferring:
			fmt.Fprintf(p.w, "import: verified %s\n", count(e.Done, "record"))
		case e.Kind == session.EventCompleted && !e.Push && e.Stage == session.Dequeuing:
			fmt.Fprintf(p.w, "import: merged %s\n", count(e.Done, "record"))
		}
	case "bar":
		if e.Kind == session.EventStarted || (e.Push && e.Total == 0 && e.Done == 0 && !p.barShown) {
			return
		}
		const width = 30
		frac := 1.0
		if e.Total > 0 {
			frac = float64(e.Done) / float64(e.Total)
		}
		filled := int(frac * width)
		fmt.Fprintf(p.w, "\r%-7s %-14s [%s%s] %d/%d records %s   ", dir, e.Stage,
			strings.Repeat("#", filled), strings.Repeat(".", width-filled), e.Done, e.Total, byteSize(e.Bytes))
		p.barShown = true
		if e.Kind == session.EventCompleted && e.Stage == session.Cleanup {
			fmt.Fprintln(p.w)
			p.barShown = false
		}
	}
}

// done ends a bar line that is still open.
func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.barShown {
		fmt.Fprintln(p.w)
		p.barShown = false
	}
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
