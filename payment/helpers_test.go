package payment_test

import (
	"crypto/rsa"
	"os"
	"testing"

	"seckill/payment"
)

// The keys in testdata are throwaway keys generated for these tests (2048
// bits, PKCS #8 PEM); they protect nothing.
func testKey(t testing.TB, name string) *rsa.PrivateKey {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name + ".pem")
	if err != nil {
		t.Fatal(err)
	}
	k, err := payment.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
