package payment_test

import (
	"crypto/x509"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
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
