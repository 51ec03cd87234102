package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/morango-sync/morango/session"
)

// Every key of a --json progress line is lower-case, as in the command's
// result: the event's time is "at".
func TestJSONProgressKeys(t *testing.T) {
	var buf bytes.Buffer
	p := newProgress(&buf, true, false)
	p.event(session.Event{Transfer: "t", Push: true, Kind: session.EventStarted, At: time.Unix(0, 0).UTC()})
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("%v: %s", err, buf.Bytes())
	}
	if _, ok := line["at"]; !ok {
		t.Errorf("no \"at\" key: %s", buf.Bytes())
	}
	for k := range line {
		if k != strings.ToLower(k) {
			t.Errorf("key %q is not lower-case: %s", k, buf.Bytes())
		}
	}
}
