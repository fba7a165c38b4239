package payment

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KeyBits is the size of the keys LoadOrCreateKey makes (RSA2 needs 2048).
const KeyBits = 2048

// MerchantKeyPath is where `seckill serve` keeps the shop's private key in
// its data directory; the public half, for the provider, is at
// PublicKeyPath(MerchantKeyPath(dir)).
func MerchantKeyPath(dataDir string) string {
	return filepath.Join(dataDir, "payment", "merchant.pem")
}

// PublicKeyPath is where LoadOrCreateKey writes the public half of the
// private key at path: "x.pem" → "x.pub.pem".
func PublicKeyPath(path string) string {
	return strings.TrimSuffix(path, ".pem") + ".pub.pem"
}

// LoadOrCreateKey reads the PEM private key at path, or, if there is no
// file, generates one and writes it there with mode 0600 (its directory
// 0700). Either way it (re)writes the public half to PublicKeyPath(path)
// when that file is missing, so it can be handed to the other side. Each
// file appears whole or not at all: a process killed while writing one
// leaves none (before, an empty key file that failed every later start).
// An empty key file, left by an older version killed so, is made anew: no
// signature was ever made with it, nor its public half handed out.
func LoadOrCreateKey(path string) (*rsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	var key *rsa.PrivateKey
	switch {
	case err == nil && len(b) == 0:
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("key %s: empty, and %w", path, err)
		}
		return LoadOrCreateKey(path)
	case err == nil:
		if key, err = ParsePrivateKey(b); err != nil {
			return nil, fmt.Errorf("key %s: %w", path, err)
		}
	case errors.Is(err, fs.ErrNotExist):
		if key, err = rsa.GenerateKey(rand.Reader, KeyBits); err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		// Linked into place, which fails if the name exists: two
		// processes starting at once must not each keep their own key;
		// the loser reads the winner's, whole.
		err = writeWhole(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600, os.Link)
		if errors.Is(err, fs.ErrExist) {
			return LoadOrCreateKey(path)
		}
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", path, err)
		}
	default:
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	pub := PublicKeyPath(path)
	if st, err := os.Stat(pub); errors.Is(err, fs.ErrNotExist) || err == nil && st.Size() == 0 {
		b, err := EncodePublicKey(&key.PublicKey)
		if err != nil {
			return nil, err
		}
		if err := writeWhole(pub, b, 0o644, os.Rename); err != nil {
			return nil, fmt.Errorf("public key %s: %w", pub, err)
		}
	}
	return key, nil
}

// writeWhole writes b to a new file beside path, syncs it and puts it at
// path with place (os.Link: only if path does not exist; os.Rename:
// replacing it), so that path holds all of b or is left as it was.
func writeWhole(path string, b []byte, mode os.FileMode, place func(from, to string) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a link, the name that stays is path's
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(b)
	}
	if err == nil {
		err = f.Sync()
	}
	if err = errors.Join(err, f.Close()); err != nil {
		return err
	}
	return place(tmp, path)
}

// EncodePublicKey writes pub as a PEM "PUBLIC KEY" (PKIX).
func EncodePublicKey(pub *rsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ReadPublicKey reads an RSA public key file (see ParsePublicKey).
func ReadPublicKey(path string) (*rsa.PublicKey, error) {
	return readKey(path, "public", ParsePublicKey)
}

// ReadPrivateKey reads the PEM RSA private key at path (PKCS #8 or #1),
// of at least KeyBits bits (RSA2's: a shorter key cannot sign at all, or
// signs weakly).
func ReadPrivateKey(path string) (*rsa.PrivateKey, error) {
	key, err := readKey(path, "private", ParsePrivateKey)
	if err == nil && key.N.BitLen() < KeyBits {
		return nil, fmt.Errorf("private key %s: %d bits, want at least %d", path, key.N.BitLen(), KeyBits)
	}
	return key, err
}

// readKey reads the file at path and parses it with parse; what (public,
// private) names the key in errors.
func readKey[K any](path, what string, parse func([]byte) (K, error)) (K, error) {
	var zero K
	b, err := os.ReadFile(path)
	if err != nil {
		return zero, err
	}
	key, err := parse(b)
	if err != nil {
		return zero, fmt.Errorf("%s key %s: %w", what, path, err)
	}
	return key, nil
}

// ParsePublicKey parses an RSA public key given as PEM "PUBLIC KEY" (PKIX)
// or "RSA PUBLIC KEY" (PKCS #1), as the bare base64 of the PKIX form (how
// Alipay's console hands out its public key), or as a private key PEM
// (its public half).
func ParsePublicKey(b []byte) (*rsa.PublicKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(b)), ""))
		if err != nil {
			return nil, errors.New("neither PEM nor base64")
		}
		return pkixRSA(der)
	}
	switch block.Type {
	case "PUBLIC KEY":
		return pkixRSA(block.Bytes)
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(block.Bytes)
	case "PRIVATE KEY", "RSA PRIVATE KEY":
		key, err := ParsePrivateKey(b)
		if err != nil {
			return nil, err
		}
		return &key.PublicKey, nil
	}
	return nil, fmt.Errorf("PEM block %q is not an RSA public key", block.Type)
}

func pkixRSA(der []byte) (*rsa.PublicKey, error) {
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, err
	}
	pub, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%T is not an RSA key", k)
	}
	return pub, nil
}

// ParsePrivateKey parses a PEM "PRIVATE KEY" (PKCS #8) or "RSA PRIVATE KEY"
// (PKCS #1) holding an RSA key.
func ParsePrivateKey(b []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	switch block.Type {
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		key, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%T is not an RSA key", k)
		}
		return key, nil
	}
	return nil, fmt.Errorf("PEM block %q is not an RSA private key", block.Type)
}
