package httpapi

import (
	"bytes"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"seckill"
	"seckill/account"
)

// Every decoder must, for any input, either fail with invalid/too_large or
// return a request that passes its validation; never panic.

func checkDecodeError(t *testing.T, data []byte, err error) {
	t.Helper()
	switch code := seckill.ErrorCode(err); code {
	case seckill.EInvalid:
	case seckill.ETooLarge:
		if len(data) <= MaxBody {
			t.Fatalf("too_large for %d bytes", len(data))
		}
	default:
		t.Fatalf("error code %q (%v) for input %q", code, err, data)
	}
}

func FuzzParseCreateUser(f *testing.F) {
	f.Add([]byte(`{"phone":"13800000000","password":"secret-pw","nickname":"li"}`))
	f.Add([]byte(`{"phone":"13800000000","password":"short"}`))
	f.Add([]byte(`{"phone":13800000000}`))
	f.Add([]byte(`{"phone":"1","extra":true}`))
	f.Add([]byte(`{"nickname":"\u00e9\ud800"}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := parseCreateUser(bytes.NewReader(data))
		if err != nil {
			checkDecodeError(t, data, err)
			return
		}
		if !account.ValidPhone(req.Phone) || utf8.RuneCountInString(req.Password) < account.MinPassword ||
			len(req.Password) > account.MaxPassword || utf8.RuneCountInString(req.Nickname) > account.MaxNickname {
			t.Fatalf("accepted invalid account %+v", req)
		}
	})
}

func FuzzParseLogin(f *testing.F) {
	f.Add([]byte(`{"phone":"13800000000","password":"secret-pw"}`))
	f.Add([]byte(`{"phone":"","password":""}`))
	f.Add([]byte(`{"phone":"x"} {"phone":"y"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := parseLogin(bytes.NewReader(data))
		if err != nil {
			checkDecodeError(t, data, err)
			return
		}
		if req.Phone == "" || req.Password == "" {
			t.Fatalf("accepted empty credentials %+v", req)
		}
	})
}

func FuzzParseCreateSale(f *testing.F) {
	f.Add([]byte(`{"name":"tea","price_cents":100,"original_price_cents":300,"stock":10,"starts_at":"2026-01-01T10:00:00Z","ends_at":"2026-01-01T11:00:00Z"}`))
	f.Add([]byte(`{"name":"tea","stock":10,"starts_at":"2026-01-01T10:00:00+08:00","ends_at":"2026-01-01T10:00:00Z","require_captcha":false}`))
	f.Add([]byte(`{"name":"tea","stock":1e30}`))
	f.Add([]byte(`{"name":"tea","stock":-1,"starts_at":"bad"}`))
	f.Add([]byte(`{"require_captcha":"yes"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := parseCreateSale(bytes.NewReader(data))
		if err != nil {
			checkDecodeError(t, data, err)
			return
		}
		if s.Name == "" || s.Stock < 1 || s.Stock > seckill.MaxStock || s.PriceCents < 0 ||
			s.OriginalPriceCents < 0 || !s.EndsAt.After(s.StartsAt) || s.StartsAt.Location().String() != "UTC" {
			t.Fatalf("accepted invalid sale %+v", s)
		}
	})
}

func FuzzParsePath(f *testing.F) {
	f.Add([]byte(`{"captcha_id":"abc","answer":"12"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(``))
	f.Add([]byte(`{"answer":12}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := parsePath(bytes.NewReader(data))
		if err != nil {
			checkDecodeError(t, data, err)
			return
		}
		if len(req.CaptchaID) > 128 || len(req.Answer) > 32 {
			t.Fatalf("accepted oversized path request %+v", req)
		}
	})
}

func TestDecodeLimits(t *testing.T) {
	big := append([]byte(`{"captcha_id":"`), bytes.Repeat([]byte("a"), MaxBody)...)
	big = append(big, `"}`...)
	if _, err := parsePath(bytes.NewReader(big)); seckill.ErrorCode(err) != seckill.ETooLarge {
		t.Fatalf("oversized body: %v", err)
	}
	// Exactly at the limit is accepted by the decoder (and refused by
	// validation for being long, not for being large).
	pad := MaxBody - len(`{"captcha_id":"x","answer":"1"}`)
	atLimit := append([]byte(`{"captcha_id":"x","answer":"1"}`), bytes.Repeat([]byte(" "), pad)...)
	if _, err := parsePath(bytes.NewReader(atLimit)); err != nil {
		t.Fatalf("body of exactly %d bytes: %v", len(atLimit), err)
	}
	if _, err := parsePath(bytes.NewReader(append(atLimit, ' '))); seckill.ErrorCode(err) != seckill.ETooLarge {
		t.Fatalf("body of %d bytes: %v", len(atLimit)+1, err)
	}
}

func FuzzParseBenchUsers(f *testing.F) {
	f.Add([]byte(`{"count":100,"prefix":"139"}`))
	f.Add([]byte(`{"count":-1,"prefix":"1"}`))
	f.Add([]byte(`{"count":1e9}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := parseBenchUsers(bytes.NewReader(data))
		if err != nil {
			if code := seckill.ErrorCode(err); code != seckill.EInvalid && code != seckill.ETooLarge {
				t.Fatalf("error code %q (%v) for input %q", code, err, data)
			}
			return
		}
		if account.ValidateProvision(req.Count, req.Prefix) != nil {
			t.Fatalf("accepted invalid provisioning %+v", req)
		}
	})
}

// FuzzToken: whatever the Authorization header holds, token returns a
// bearer token without surrounding space, or nothing; never a part of a
// header of another scheme.
func FuzzToken(f *testing.F) {
	f.Add("Bearer abc")
	f.Add("Bearer  spaced ")
	f.Add("Basic dXNlcjpwYXNz")
	f.Add("bearer abc")
	f.Add("")
	f.Fuzz(func(t *testing.T, h string) {
		r := httptest.NewRequest("GET", "/api/me", nil)
		r.Header.Set("Authorization", h)
		got := token(r)
		if got != strings.TrimSpace(got) {
			t.Fatalf("token %q keeps surrounding space", got)
		}
		if got != "" && !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			t.Fatalf("token %q taken from a header of another scheme %q", got, h)
		}
	})
}

// FuzzClientAddr: the address the per-IP limits count is, for any
// X-Forwarded-For from a trusted proxy, a valid IP: the peer's or one the
// header names, never the header's garbage.
func FuzzClientAddr(f *testing.F) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")}
	f.Add("203.0.113.7, 10.0.0.2")
	f.Add("garbage, 127.0.0.1")
	f.Add("::1,fe80::1%eth0")
	f.Add("")
	f.Fuzz(func(t *testing.T, xff string) {
		got := clientAddr("127.0.0.1:4242", []string{xff}, trusted)
		a, err := netip.ParseAddr(got)
		if err != nil || a.String() != got {
			t.Fatalf("client address %q for X-Forwarded-For %q is not a canonical IP", got, xff)
		}
		if got != "127.0.0.1" && !strings.Contains(xff, got) && !strings.Contains(strings.ToLower(xff), got) {
			// Canonical forms may differ from what was written (IPv6
			// zeros, mapped IPv4), so only check that it came from an
			// entry that parses to it.
			found := false
			for _, e := range strings.Split(xff, ",") {
				if p, err := netip.ParseAddr(strings.TrimSpace(e)); err == nil && p.Unmap().String() == got {
					found = true
				}
			}
			if !found {
				t.Fatalf("client address %q is in no entry of %q", got, xff)
			}
		}
	})
}

// FuzzParseID: an id in a path is taken only in the spelling the API
// writes (FormatInt of a positive id), so one resource has one URL; any
// other spelling names nothing (not_found).
func FuzzParseID(f *testing.F) {
	for _, s := range []string{"1", "42", "9223372036854775807", "+1", "01", "0", "-1", "9223372036854775808", "1e3", "0x1", " 1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		id, err := parseID(v, "sale")
		if err != nil {
			if seckill.ErrorCode(err) != seckill.ENotFound {
				t.Fatalf("%q: %v, want not_found", v, err)
			}
			if n, perr := strconv.ParseInt(v, 10, 64); perr == nil && n > 0 && strconv.FormatInt(n, 10) == v {
				t.Fatalf("%q refused, but it is the API's spelling of %d", v, n)
			}
			return
		}
		if id <= 0 || strconv.FormatInt(id, 10) != v {
			t.Fatalf("%q taken as %d: not the API's one spelling of it", v, id)
		}
	})
}
