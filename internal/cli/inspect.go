package cli

import (
	"bufio"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/morango-sync/morango/bundle"
	"github.com/morango-sync/morango/certs"
	"github.com/morango-sync/morango/profile"
)

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "describe a bundle or manifest file, without a database",
		ArgsUsage: "FILE",
		Description: `Shows the format version, sender, certificate chain, signature validity, filter,
counters, counts per model and partition, sizes and compression ratio. The signature is checked
against the key of the chain's last certificate; give --profile to verify the chain itself.

Example:
   morango inspect --profile profile.json --records /media/usb/morango/5ad6…-to-1f0c….bundle`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "records", Usage: "print the records as JSON lines"},
			&cli.StringFlag{Name: "profile", Usage: "a profile `FILE` whose scope definitions verify the chain"},
			jsonFlag,
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("inspect: name one file")
			}
			path := c.Args().First()
			var defs certs.Definitions
			if pf := c.String("profile"); pf != "" {
				p, err := profile.Load(pf)
				if err != nil {
					return err
				}
				defs = p
			}
			chainStatus := "not verified (give --profile)"
			checkChain := func(chain []certs.Link) {
				if defs == nil {
					return
				}
				if _, err := certs.VerifyChain(chain, defs); err != nil {
					chainStatus = "INVALID: " + err.Error()
				} else {
					chainStatus = "valid"
				}
			}
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := bundle.Inspect(f, &bundle.ReaderOptions{
				Verify: func(h *bundle.Header) (*rsa.PublicKey, error) {
					checkChain(h.Chain)
					return leafKey(h.Chain)
				},
				VerifyManifest: func(m *bundle.Manifest) (*rsa.PublicKey, error) {
					checkChain(m.Chain)
					return leafKey(m.Chain)
				},
			})
			if err != nil {
				return &exitError{code: ExitFailure, err: fmt.Errorf("inspect %s: %w", path, err),
					hint: "the file is damaged, truncated or not a morango bundle"}
			}
			if c.Bool("records") && st.Kind == "bundle" {
				return printRecords(c, path)
			}
			if c.Bool("json") {
				return printJSON(out(c), struct {
					*bundle.Stats
					Chain string `json:"chain_status"`
				}{st, chainStatus})
			}
			printStats(c, st, chainStatus)
			return nil
		},
	}
}

func leafKey(chain []certs.Link) (*rsa.PublicKey, error) {
	if len(chain) == 0 {
		return nil, errors.New("no certificate chain")
	}
	last := chain[len(chain)-1]
	cert, err := certs.Deserialize(last.Serialized, last.Signature)
	if err != nil {
		return nil, err
	}
	return cert.PublicKey, nil
}

func printStats(c *cli.Context, st *bundle.Stats, chainStatus string) {
	printf(c, "%s, format version %d, %s\n", st.Kind, st.Version, byteSize(st.Size))
	if m := st.Manifest; m != nil {
		name := ""
		if m.Name != "" {
			name = " (" + m.Name + ")"
		}
		printf(c, "device     instance %s%s, certificate %s\n", m.Instance, name, m.CertID)
		printf(c, "created    %s\nprofile    %s\nfilter     %s\n", m.Created, m.Profile, strings.Join(m.Filter, " "))
		printf(c, "chain      %s, %s\n", count(len(m.Chain), "certificate"), chainStatus)
		printf(c, "%s\n", strings.TrimSpace("signature  "+st.Signature+" "+st.Problem))
		holds, _ := json.Marshal(m.FSIC)
		printf(c, "holds      %s\n", holds)
		return
	}
	h := st.Header
	to := "anyone"
	if h.RecipientInstance != "" {
		to = "instance " + h.RecipientInstance + ", certificate " + h.RecipientCert
	}
	printf(c, "transfer   %s, created %s\nprofile    %s\n", h.TransferID, h.Created, h.Profile)
	printf(c, "sender     instance %s, certificate %s\nfor        %s\n", h.SenderInstance, h.SenderCert, to)
	printf(c, "chain      %s, %s\n", count(len(h.Chain), "certificate"), chainStatus)
	printf(c, "digest     %s (%s)\n", st.Digest, map[bool]string{true: "matches", false: "DOES NOT MATCH"}[st.DigestValid])
	printf(c, "%s\n", strings.TrimSpace("signature  "+st.Signature+" "+st.Problem))
	printf(c, "filter     %s\n", strings.Join(h.Filter, " "))
	fsic, _ := json.Marshal(h.FSIC)
	printf(c, "counters   %s\n", fsic)
	printf(c, "records    %d in %s; %s compressed from %s (ratio %.1f)\n", st.Records, count(st.Chunks, "chunk"),
		byteSize(st.Compressed), byteSize(st.Uncompressed), st.Ratio)
	for _, m := range sortedKeys(st.Models) {
		printf(c, "  model      %-22s %d\n", m, st.Models[m])
	}
	for _, p := range sortedKeys(st.Partitions) {
		printf(c, "  partition  %-60s %d\n", p, st.Partitions[p])
	}
}

// printRecords prints a bundle's records as JSON lines with the original's
// buffer field names.
func printRecords(c *cli.Context, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := bundle.NewReader(bufio.NewReader(f), &bundle.ReaderOptions{Unverified: true})
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out(c))
	type rmc struct {
		Instance string `json:"instance_id"`
		Counter  int64  `json:"counter"`
	}
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		l := make([]rmc, len(rec.RMC))
		for i, x := range rec.RMC {
			l[i] = rmc{x.Instance, x.Counter}
		}
		err = enc.Encode(struct {
			ModelUUID   string `json:"model_uuid"`
			Profile     string `json:"profile"`
			ModelName   string `json:"model_name"`
			Partition   string `json:"partition"`
			SourceID    string `json:"source_id"`
			Serialized  string `json:"serialized"`
			Deleted     bool   `json:"deleted"`
			HardDeleted bool   `json:"hard_deleted"`
			LSI         string `json:"last_saved_instance"`
			LSC         int64  `json:"last_saved_counter"`
			Conflicting string `json:"conflicting_serialized_data"`
			SelfRefFK   string `json:"_self_ref_fk"`
			RMC         []rmc  `json:"rmcb_list"`
		}{rec.ModelUUID, rec.Profile, rec.ModelName, rec.Partition, rec.SourceID, rec.Serialized, rec.Deleted,
			rec.HardDeleted, rec.LastSavedInstance, rec.LastSavedCounter, rec.ConflictingSerializedData, rec.SelfRefFK, l})
		if err != nil {
			return err
		}
	}
}
