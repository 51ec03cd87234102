//go:build unix

package session

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A file on the stick that is not a regular file — a named pipe called
// like a bundle or a manifest — is hostile input like any other: exchange
// reports it as failed and goes on with the other files. Opening it would
// block in open(2) until some other process writes to the pipe, and no
// context cancellation could stop that.
func TestExchangeDoesNotHangOnAPipe(t *testing.T) {
	for _, name := range []string{"0000-to-anyone.bundle", "0000.manifest"} {
		t.Run(name, func(t *testing.T) {
			stick := t.TempDir()
			_, city, _ := facilityAnd(t, "city")
			pipe := filepath.Join(stick, name)
			if err := syscall.Mkfifo(pipe, 0o644); err != nil {
				t.Skip("no named pipes here:", err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := Exchange(t.Context(), city.db, stick, ExchangeOptions{CertID: city.cert, Name: city.name})
				done <- err
			}()
			select {
			case <-done:
				if _, err := os.Stat(filepath.Join(stick, ManifestName(city.instance()))); err != nil {
					t.Errorf("exchange did not write its manifest: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("exchange is still blocked on the pipe %s after 10 s", name)
				// Unblock it (a writer opens the pipe, then closes it) so
				// that the test can clean up.
				if w, err := os.OpenFile(pipe, os.O_WRONLY, 0); err == nil {
					w.Close()
				}
				<-done
			}
		})
	}
}
