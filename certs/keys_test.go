package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
)

// The DER header of a 2048-bit RSA SubjectPublicKeyInfo, in base64: the
// prefix the original adds to and strips from public key strings.
const spkiPrefix = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A"

func TestFixtureKeys(t *testing.T) {
	f, keys := loadCertificates(t)
	for _, c := range f.certs() {
		k := keys[c.ID]
		if got := PrivateKeyString(k); got != c.PrivateKeyString {
			t.Errorf("%s: PrivateKeyString does not give back the fixture's PEM:\n%s", c.ID, got)
		}
		if got := PublicKeyString(&k.PublicKey); got != c.PublicKeyString {
			t.Errorf("%s: PublicKeyString = %s, want %s", c.ID, got, c.PublicKeyString)
		}
		if !strings.HasPrefix(c.PublicKeyString, "MIIBCgKCAQEA") {
			t.Errorf("%s: fixture key string %.20s…", c.ID, c.PublicKeyString)
		}
		pub, err := ParsePublicKey(c.PublicKeyString)
		if err != nil {
			t.Fatal(err)
		}
		if !pub.Equal(&k.PublicKey) {
			t.Errorf("%s: parsed public key differs from the private key's", c.ID)
		}
		if k.N.BitLen() != 2048 || k.E != 65537 {
			t.Errorf("%s: %d bits, e=%d", c.ID, k.N.BitLen(), k.E)
		}
	}
}

// wrap64 breaks s into lines of 64 characters.
func wrap64(s string) string {
	var lines []string
	for len(s) > 64 {
		lines = append(lines, s[:64])
		s = s[64:]
	}
	return strings.Join(append(lines, s), "\n")
}

func TestParsePublicKeyForms(t *testing.T) {
	f, keys := loadCertificates(t)
	want := &keys[f.Root.ID].PublicKey
	pkcs1 := f.Root.PublicKeyString
	spkiDER, err := x509.MarshalPKIXPublicKey(want)
	if err != nil {
		t.Fatal(err)
	}
	spki := base64.StdEncoding.EncodeToString(spkiDER)
	if spki != spkiPrefix+pkcs1 {
		t.Fatalf("SubjectPublicKeyInfo base64 is not the fixed prefix followed by the PKCS#1 string")
	}
	forms := map[string]string{
		"bare PKCS#1":                   pkcs1,
		"bare PKCS#1 wrapped":           wrap64(pkcs1),
		"bare SPKI":                     spki,
		"bare SPKI wrapped":             wrap64(spki),
		"PEM RSA PUBLIC KEY":            string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(want)})),
		"PEM PUBLIC KEY":                string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spkiDER})),
		"PEM PUBLIC KEY one body line":  "-----BEGIN PUBLIC KEY-----\n" + spki + "\n-----END PUBLIC KEY-----",
		"PEM RSA PUBLIC KEY, CRLF":      "-----BEGIN RSA PUBLIC KEY-----\r\n" + strings.ReplaceAll(wrap64(pkcs1), "\n", "\r\n") + "\r\n-----END RSA PUBLIC KEY-----\r\n",
		"PEM with blank lines":          "\n  -----BEGIN RSA PUBLIC KEY-----\n\n" + pkcs1 + "\n\n-----END RSA PUBLIC KEY-----\n\n",
		"PEM PUBLIC KEY, PKCS#1 inside": "-----BEGIN PUBLIC KEY-----\n" + wrap64(pkcs1) + "\n-----END PUBLIC KEY-----\n",
	}
	for name, s := range forms {
		got, err := ParsePublicKey(s)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !got.Equal(want) {
			t.Errorf("%s: another key", name)
		}
		if PublicKeyString(got) != pkcs1 {
			t.Errorf("%s: does not give back the one-line form", name)
		}
	}

	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{
		"empty":          "",
		"headers only":   "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----",
		"not base64":     "MIIBCgKCAQEA!!!",
		"truncated":      pkcs1[:100],
		"trailing bytes": base64.StdEncoding.EncodeToString(append(x509.MarshalPKCS1PublicKey(want), 0)),
		"1024-bit key":   PublicKeyString(&small.PublicKey),
		"EC key":         base64.StdEncoding.EncodeToString(ecDER),
		"huge":           strings.Repeat("A", maxKeyText+1),
	}
	for name, s := range bad {
		if _, err := ParsePublicKey(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
	if PublicKeyString(nil) != "" {
		t.Error("PublicKeyString(nil) is not empty")
	}
}

func TestParsePrivateKeyForms(t *testing.T) {
	f, keys := loadCertificates(t)
	want := keys[f.Root.ID]
	pemText := f.Root.PrivateKeyString
	body := strings.TrimSpace(removePEMHeaders(pemText))
	pkcs8, err := x509.MarshalPKCS8PrivateKey(want)
	if err != nil {
		t.Fatal(err)
	}
	forms := map[string]string{
		"PEM":                 pemText,
		"body":                body,
		"body on one line":    strings.ReplaceAll(body, "\n", ""),
		"PEM without newline": strings.TrimSpace(pemText),
		"PKCS#8 PEM":          string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})),
	}
	for name, s := range forms {
		got, err := ParsePrivateKey(s)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !got.Equal(want) {
			t.Errorf("%s: another key", name)
		}
	}
	for name, s := range map[string]string{"empty": "", "public key": f.Root.PublicKeyString, "garbage": "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----"} {
		if _, err := ParsePrivateKey(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
	if PrivateKeyString(nil) != "" {
		t.Error("PrivateKeyString(nil) is not empty")
	}
}

func TestSigningFixture(t *testing.T) {
	f, keys := loadCertificates(t)
	ex := f.SigningExamples[0]
	if ex.Signer != "root" || f.SigningExamples[1].SameSignatureTwice == nil || !*f.SigningExamples[1].SameSignatureTwice {
		t.Fatalf("unexpected signing examples: %+v", f.SigningExamples)
	}
	rootPub, _ := ParsePublicKey(f.Root.PublicKeyString)
	childPub, _ := ParsePublicKey(f.Child.PublicKeyString)
	msg := []byte(ex.Message)

	check := func(name string, err error, ok bool) {
		t.Helper()
		switch {
		case ok && err != nil:
			t.Errorf("%s: %v, want success", name, err)
		case !ok && !errors.Is(err, ErrSignatureInvalid):
			t.Errorf("%s: err = %v, want ErrSignatureInvalid", name, err)
		}
	}
	check("root key", Verify(rootPub, msg, ex.Signature), ex.VerifyWithRoot)
	check("child key", Verify(childPub, msg, ex.Signature), ex.VerifyWithChild)
	check("tampered message", Verify(rootPub, append(msg, '!'), ex.Signature), ex.VerifyTampered)
	check("signature with line breaks", Verify(rootPub, msg, wrap64(ex.Signature)+"\n"), true)

	for range 2 {
		sig, err := Sign(keys[f.Root.ID], msg)
		if err != nil {
			t.Fatal(err)
		}
		if sig != ex.Signature {
			t.Errorf("Sign = %s, want the fixture's %s", sig, ex.Signature)
		}
	}
	root := &Certificate{ID: f.Root.ID, PublicKey: rootPub, PrivateKey: keys[f.Root.ID]}
	if sig, err := root.Sign(msg); err != nil || sig != ex.Signature {
		t.Errorf("Certificate.Sign = %s, %v", sig, err)
	}
	if err := root.Verify(msg, ex.Signature); err != nil {
		t.Errorf("Certificate.Verify: %v", err)
	}

	// Bad base64 is a parse error, kept apart from a signature mismatch.
	for _, sig := range []string{"not base64!", ex.Signature[:len(ex.Signature)-1], strings.Repeat("A", maxSignatureLen+4)} {
		err := Verify(rootPub, msg, sig)
		if !errors.Is(err, ErrMalformed) || errors.Is(err, ErrSignatureInvalid) {
			t.Errorf("signature %.20q…: err = %v, want ErrMalformed only", sig, err)
		}
	}
	if _, err := Sign(nil, msg); !errors.Is(err, ErrNoPrivateKey) {
		t.Errorf("Sign(nil): err = %v", err)
	}
	if _, err := (&Certificate{ID: "x"}).Sign(msg); !errors.Is(err, ErrNoPrivateKey) {
		t.Errorf("Certificate.Sign without a key: err = %v", err)
	}
}
