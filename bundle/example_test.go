package bundle_test

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"os"

	"github.com/morango-sync/morango/bundle"
	"github.com/morango-sync/morango/certs"
)

func exampleKey() *rsa.PrivateKey {
	b, err := os.ReadFile("testdata/golden/key.pem")
	if err != nil {
		log.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	key, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
	if err != nil {
		log.Fatal(err)
	}
	return key
}

func Example() {
	key := exampleKey()
	const cert = "3f7a9c0d1e2b4a5968778695a4b3c2d1"
	records := []*bundle.Record{
		{ModelUUID: "5d8e6c1f0a2b3c4d5e6f708192a3b4c5", Profile: "facilitydata", ModelName: "facilityuser",
			Partition: "ds:user-rw:5d8e", Serialized: `{"username": "amaru"}`,
			LastSavedInstance: "0f1e2d3c4b5a69788796a5b4c3d2e1f0", LastSavedCounter: 3,
			RMC: []bundle.Counter{{Instance: "0f1e2d3c4b5a69788796a5b4c3d2e1f0", Counter: 3}}},
		{ModelUUID: "6e9f7d2a1b3c4d5e6f708192a3b4c5d6", Profile: "facilitydata", ModelName: "contentsummarylog",
			Partition: "ds:user-rw:5d8e", Serialized: `{"progress": 1.0}`, Deleted: true,
			LastSavedInstance: "0f1e2d3c4b5a69788796a5b4c3d2e1f0", LastSavedCounter: 4},
	}
	h := &bundle.Header{
		Profile:        "facilitydata",
		TransferID:     "a1b2c3d4e5f60718293a4b5c6d7e8f90",
		Created:        "2025-01-02T03:04:05Z",
		SenderInstance: "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
		SenderCert:     cert,
		Chain:          []certs.Link{{ID: cert, Serialized: "{…}", Signature: "…"}},
		Filter:         []string{"ds"},
		Counts:         map[string]int64{"facilityuser": 1, "contentsummarylog": 1},
		Records:        2,
	}

	var file bytes.Buffer
	w, err := bundle.NewWriter(&file, h, key, nil)
	if err != nil {
		log.Fatal(err)
	}
	for _, rec := range records {
		if err := w.Write(rec); err != nil {
			log.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}

	r, err := bundle.NewReader(bytes.NewReader(file.Bytes()), &bundle.ReaderOptions{
		Verify: func(h *bundle.Header) (*rsa.PublicKey, error) {
			// A real caller verifies h.Chain and that it roots in a
			// trusted certificate, then returns the key of h.SenderCert.
			if h.SenderCert != cert {
				return nil, errors.New("unknown signer")
			}
			return &key.PublicKey, nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	for {
		rec, err := r.Next()
		if err == io.EOF {
			fmt.Println("digest and signature verified")
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(rec.ModelName, rec.Deleted)
	}

	// A changed byte is caught.
	damaged := bytes.Clone(file.Bytes())
	damaged[len(damaged)-1] ^= 1
	s, err := bundle.Inspect(bytes.NewReader(damaged), &bundle.ReaderOptions{
		Verify: func(*bundle.Header) (*rsa.PublicKey, error) { return &key.PublicKey, nil },
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(s.Records, "records, signature", s.Signature)
	// Output:
	// facilityuser false
	// contentsummarylog true
	// digest and signature verified
	// 2 records, signature invalid
}
