package payment_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"seckill/payment"
)

func TestLoadOrCreateKey(t *testing.T) {
	dir := t.TempDir()
	path := payment.MerchantKeyPath(dir)
	k1, err := payment.LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", st.Mode().Perm())
	}
	if st, _ := os.Stat(filepath.Dir(path)); st.Mode().Perm() != 0o700 {
		t.Fatalf("key dir mode %v, want 0700", st.Mode().Perm())
	}
	if k1.N.BitLen() != payment.KeyBits {
		t.Fatalf("key of %d bits", k1.N.BitLen())
	}
	k2, err := payment.LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equal(k2) {
		t.Fatal("a second start made another key")
	}
	pub, err := payment.ReadPublicKey(payment.PublicKeyPath(path))
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(&k1.PublicKey) {
		t.Fatal("public key file does not match")
	}
	if got := payment.PublicKeyPath(path); got != filepath.Join(dir, "payment", "merchant.pub.pem") {
		t.Fatalf("public key path %s", got)
	}
}

// TestLoadOrCreateKeyWhole: a key file is written whole or not at all.
// An empty one (an older version killed between creating and writing it,
// which then failed every start) is made anew, and so is an empty public
// half; starts at once all get the one key, and no temporary file stays.
func TestLoadOrCreateKeyWhole(t *testing.T) {
	dir := t.TempDir()
	path := payment.MerchantKeyPath(dir)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{path, payment.PublicKeyPath(path)} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	key, err := payment.LoadOrCreateKey(path)
	if err != nil {
		t.Fatalf("over an empty key file: %v", err)
	}
	if pub, err := payment.ReadPublicKey(payment.PublicKeyPath(path)); err != nil || !pub.Equal(&key.PublicKey) {
		t.Fatalf("public half over an empty file: %v", err)
	}
	if again, err := payment.LoadOrCreateKey(path); err != nil || !again.Equal(key) {
		t.Fatalf("the key made over the empty file is not kept: %v", err)
	}

	fresh := payment.MerchantKeyPath(t.TempDir())
	keys := make([]*rsa.PrivateKey, 8)
	errs := make([]error, len(keys))
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() { keys[i], errs[i] = payment.LoadOrCreateKey(fresh) })
	}
	wg.Wait()
	for i := range keys {
		if errs[i] != nil || !keys[i].Equal(keys[0]) {
			t.Fatalf("start %d of %d at once: %v, or another key", i, len(keys), errs[i])
		}
	}
	for _, d := range []string{filepath.Dir(path), filepath.Dir(fresh)} {
		names, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		if len(names) != 2 {
			var got []string
			for _, n := range names {
				got = append(got, n.Name())
			}
			t.Errorf("%s holds %v, want the key and its public half", d, got)
		}
	}
}

// TestReadPrivateKey: a key file given to the server is read as PKCS #8
// or #1, and one shorter than RSA2's 2048 bits is refused at start (a
// 512-bit key was read, then failed every signature: every pay a 500).
func TestReadPrivateKey(t *testing.T) {
	path := payment.MerchantKeyPath(t.TempDir())
	made, err := payment.LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := payment.ReadPrivateKey(path); err != nil || !got.Equal(made) {
		t.Fatalf("ReadPrivateKey of the key made: %v", err)
	}
	short, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weak := filepath.Join(t.TempDir(), "weak.pem")
	if err := os.WriteFile(weak, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(short)}), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := payment.ReadPrivateKey(weak); err == nil || !strings.Contains(err.Error(), "1024 bits") {
		t.Errorf("ReadPrivateKey of a 1024-bit key: %v, want it refused", err)
	}
	if _, err := payment.ReadPrivateKey(payment.PublicKeyPath(path)); err == nil {
		t.Error("ReadPrivateKey took a public key file")
	}
	if _, err := payment.ReadPrivateKey(filepath.Join(t.TempDir(), "none.pem")); err == nil {
		t.Error("ReadPrivateKey of no file: no error")
	}
}

func TestParsePublicKeyForms(t *testing.T) {
	k := testKey(t, "provider")
	pemPub, err := payment.EncodePublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	priv, _ := os.ReadFile("testdata/provider.pem")
	forms := map[string][]byte{
		"PEM PUBLIC KEY": pemPub,
		"bare base64":    []byte(base64.StdEncoding.EncodeToString(der) + "\n"),
		"private PEM":    priv,
	}
	for name, b := range forms {
		pub, err := payment.ParsePublicKey(b)
		if err != nil || !pub.Equal(&k.PublicKey) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := payment.ParsePublicKey([]byte(strings.Repeat("x", 10))); err == nil {
		t.Error("garbage parsed as a key")
	}
}
