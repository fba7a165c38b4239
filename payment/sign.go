package payment

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// SignType is the only signature type spoken: RSA-SHA256 (Alipay's RSA2).
const SignType = "RSA2"

// Content returns the string a notification's signature covers: every
// field with a non-empty value except sign and sign_type, sorted by name,
// as name=value joined with "&". It fails on a field given more than once.
func Content(form url.Values) (string, error) {
	return content(form, "sign", "sign_type")
}

// RequestContent is Content for a request to the gateway: there only sign
// is left out (sign_type is signed too).
func RequestContent(form url.Values) (string, error) {
	return content(form, "sign")
}

func content(form url.Values, skip ...string) (string, error) {
	keys := make([]string, 0, len(form))
	for k, vs := range form {
		if slices.Contains(skip, k) {
			continue
		}
		if len(vs) > 1 {
			return "", fmt.Errorf("field %q given %d times", k, len(vs))
		}
		if len(vs) == 0 || vs[0] == "" {
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(form[k][0])
	}
	return b.String(), nil
}

// Sign returns the base64 RSA2 signature of form's Content (a
// notification's rule). It fails on a field given twice, or a key that
// cannot sign.
func Sign(key *rsa.PrivateKey, form url.Values) (string, error) {
	c, err := Content(form)
	if err != nil {
		return "", err
	}
	return SignBytes(key, []byte(c))
}

// Verify checks form's sign field against its Content with pub. Any
// failure, a missing sign or a sign_type other than RSA2 included, is an
// ErrBadSignature.
func Verify(pub *rsa.PublicKey, form url.Values) error {
	if err := checkSignType(form); err != nil {
		return err
	}
	c, err := Content(form)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	return verifyContent(pub, c, form)
}

// SignRequest is Sign with a request's rule (RequestContent).
func SignRequest(key *rsa.PrivateKey, form url.Values) (string, error) {
	c, err := RequestContent(form)
	if err != nil {
		return "", err
	}
	return SignBytes(key, []byte(c))
}

// VerifyRequest is Verify with a request's rule (RequestContent).
func VerifyRequest(pub *rsa.PublicKey, form url.Values) error {
	if err := checkSignType(form); err != nil {
		return err
	}
	c, err := RequestContent(form)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	return verifyContent(pub, c, form)
}

// SignBytes returns the base64 RSA-SHA256 PKCS #1 v1.5 signature of msg.
// PKCS #1 v1.5 is deterministic: the same key and msg give the same
// signature, which the test vectors rely on.
func SignBytes(key *rsa.PrivateKey, msg []byte) (string, error) {
	if key == nil {
		return "", fmt.Errorf("payment: no signing key")
	}
	h := sha256.Sum256(msg)
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, h[:])
	if err != nil {
		return "", fmt.Errorf("payment: sign: %w", err)
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// VerifyBytes checks a base64 RSA-SHA256 signature of msg; any failure is
// an ErrBadSignature.
func VerifyBytes(pub *rsa.PublicKey, msg []byte, sign string) error {
	if pub == nil {
		return fmt.Errorf("%w: no provider key to check it with", ErrBadSignature)
	}
	sig, err := base64.StdEncoding.DecodeString(sign)
	if err != nil {
		return fmt.Errorf("%w: sign is not base64", ErrBadSignature)
	}
	h := sha256.Sum256(msg)
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig); err != nil {
		return fmt.Errorf("%w: signature does not match", ErrBadSignature)
	}
	return nil
}

func checkSignType(form url.Values) error {
	if st := form["sign_type"]; len(st) > 1 || (len(st) == 1 && st[0] != SignType) {
		return fmt.Errorf("%w: sign_type %q, want %s", ErrBadSignature, strings.Join(st, ","), SignType)
	}
	if len(form["sign"]) != 1 || form.Get("sign") == "" {
		return fmt.Errorf("%w: no sign, or more than one", ErrBadSignature)
	}
	return nil
}

func verifyContent(pub *rsa.PublicKey, c string, form url.Values) error {
	return VerifyBytes(pub, []byte(c), form.Get("sign"))
}
