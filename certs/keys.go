package certs

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"strings"
)

// KeyBits is the size of the RSA keys this package makes, as the original
// does. The public exponent is 65537.
const KeyBits = 2048

// Bounds on keys and signatures read from untrusted input. The original only
// parses 2048-bit keys; larger ones are accepted here up to maxKeyBits.
const (
	minKeyBits      = 2048
	maxKeyBits      = 4096
	maxKeyText      = 16 << 10
	maxSignatureLen = 2048
)

// GenerateKey returns a new RSA key of KeyBits bits with exponent 65537.
func GenerateKey() (*rsa.PrivateKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, KeyBits)
	if err != nil {
		return nil, fmt.Errorf("generate rsa key: %w", err)
	}
	return k, nil
}

// PublicKeyString returns the original's text form of a public key: the
// standard base64 of its PKCS#1 RSAPublicKey DER on one line, without PEM
// headers (it starts with "MIIBCgKCAQEA" for a 2048-bit key). Certificate
// ids hash this text. It returns "" for a nil key.
func PublicKeyString(k *rsa.PublicKey) string {
	if k == nil {
		return ""
	}
	return base64.StdEncoding.EncodeToString(x509.MarshalPKCS1PublicKey(k))
}

// ParsePublicKey parses a public key in any form the original accepts: the
// bare base64 of PKCS#1 RSAPublicKey DER or of SubjectPublicKeyInfo DER (the
// latter is the former behind the fixed prefix
// "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A"), with or without PEM headers
// ("RSA PUBLIC KEY" or "PUBLIC KEY"; any header line is ignored), with or
// without line breaks. Keys must have 2048 to 4096 bits.
func ParsePublicKey(s string) (*rsa.PublicKey, error) {
	der, err := decodeKeyText(s)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	var pub *rsa.PublicKey
	if k, err := x509.ParsePKCS1PublicKey(der); err == nil {
		pub = k
	} else if k, err := x509.ParsePKIXPublicKey(der); err == nil {
		rk, ok := k.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("public key: not an RSA key: %w", ErrMalformed)
		}
		pub = rk
	} else {
		return nil, fmt.Errorf("public key: neither PKCS#1 nor SubjectPublicKeyInfo DER: %w", ErrMalformed)
	}
	if err := checkKeySize(pub); err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return pub, nil
}

// PrivateKeyString returns a private key as PEM "RSA PRIVATE KEY" (PKCS#1),
// with headers and a final line break, as the original stores it. It returns
// "" for a nil key.
func PrivateKeyString(k *rsa.PrivateKey) string {
	if k == nil {
		return ""
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}))
}

// ParsePrivateKey parses a PKCS#1 private key, as PEM or as the bare base64
// body without headers (the original adds the headers back). A PKCS#8 body
// holding an RSA key is accepted too.
func ParsePrivateKey(s string) (*rsa.PrivateKey, error) {
	der, err := decodeKeyText(s)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	var priv *rsa.PrivateKey
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		priv = k
	} else if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("private key: not an RSA key: %w", ErrMalformed)
		}
		priv = rk
	} else {
		return nil, fmt.Errorf("private key: not PKCS#1 DER: %w", ErrMalformed)
	}
	if err := checkKeySize(&priv.PublicKey); err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	return priv, nil
}

// Sign returns the original's signature of msg: RSASSA-PKCS1-v1_5 over the
// SHA-256 of msg, in standard base64 on one line. It is deterministic.
func Sign(k *rsa.PrivateKey, msg []byte) (string, error) {
	if k == nil {
		return "", ErrNoPrivateKey
	}
	sum := sha256.Sum256(msg)
	sig, err := rsa.SignPKCS1v15(nil, k, crypto.SHA256, sum[:])
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// Verify checks a signature made by Sign. Line breaks and other white space
// in the base64 are ignored; base64 that does not decode is ErrMalformed, a
// signature that does not match is ErrSignatureInvalid.
func Verify(k *rsa.PublicKey, msg []byte, sig string) error {
	if k == nil {
		return fmt.Errorf("verify: no public key: %w", ErrMalformed)
	}
	if len(sig) > maxSignatureLen {
		return fmt.Errorf("signature of %d bytes, more than %d: %w", len(sig), maxSignatureLen, ErrMalformed)
	}
	raw, err := base64.StdEncoding.DecodeString(stripSpace(sig))
	if err != nil {
		return fmt.Errorf("signature base64: %v: %w", err, ErrMalformed)
	}
	sum := sha256.Sum256(msg)
	if err := rsa.VerifyPKCS1v15(k, crypto.SHA256, sum[:], raw); err != nil {
		return ErrSignatureInvalid
	}
	return nil
}

// decodeKeyText removes PEM headers and white space from a key's text and
// decodes the base64 left.
func decodeKeyText(s string) ([]byte, error) {
	if len(s) > maxKeyText {
		return nil, fmt.Errorf("%d bytes, more than %d: %w", len(s), maxKeyText, ErrMalformed)
	}
	body := stripSpace(removePEMHeaders(s))
	if body == "" {
		return nil, fmt.Errorf("empty: %w", ErrMalformed)
	}
	der, err := base64.StdEncoding.DecodeString(body)
	if err != nil {
		return nil, fmt.Errorf("base64: %v: %w", err, ErrMalformed)
	}
	return der, nil
}

// removePEMHeaders follows the original: a text whose trimmed form starts
// with "-----" loses its empty lines and every line that starts with "---";
// any other text is returned as is. Unlike the original, lines are trimmed
// of white space first.
func removePEMHeaders(s string) string {
	if !strings.HasPrefix(strings.TrimSpace(s), "-----") {
		return s
	}
	var keep []string
	for line := range strings.SplitSeq(s, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "---") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}

// stripSpace removes ASCII white space (line breaks included).
func stripSpace(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\n', '\r', '\v', '\f':
			return -1
		}
		return r
	}, s)
}

func checkKeySize(k *rsa.PublicKey) error {
	if n := k.N.BitLen(); n < minKeyBits || n > maxKeyBits {
		return fmt.Errorf("%d-bit key, want %d to %d bits: %w", n, minKeyBits, maxKeyBits, ErrMalformed)
	}
	return nil
}
