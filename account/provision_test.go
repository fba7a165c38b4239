package account

import (
	"context"
	"fmt"
	"testing"

	"seckill"
)

func TestValidateProvision(t *testing.T) {
	cases := []struct {
		name   string
		count  int
		prefix string
		ok     bool
	}{
		{"one", 1, "17", true},
		{"most", MaxProvision, "17", true},
		{"last room", 10, "1700000000", true},
		{"zero", 0, "17", false},
		{"too many", MaxProvision + 1, "17", false},
		{"not digits", 1, "1a", false},
		{"not starting with 1", 1, "27", false},
		{"empty prefix", 1, "", false},
		{"prefix too long", 1, "17000000000", false},
		{"no room", 11, "1700000000", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := ValidateProvision(c.count, c.prefix)
			if c.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !c.ok {
				wantCode(t, err, seckill.EInvalid)
			}
		})
	}
}

func TestProvision(t *testing.T) {
	f := newFixture(t, Config{}, nil)
	ctx := context.Background()
	got, err := f.s.Provision(ctx, f.db, 25, "1712")
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if len(got) != 25 {
		t.Fatalf("%d accounts, want 25", len(got))
	}
	hashes := map[string]bool{}
	for i, p := range got {
		sess, err := f.s.Authenticate(ctx, p.Token)
		if err != nil || sess.UserID != p.ID || sess.Role != seckill.RoleBuyer {
			t.Fatalf("account %d %+v: session %+v, %v", i, p, sess, err)
		}
		u, err := f.s.User(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("1712%07d", i); u.Phone != want {
			t.Fatalf("phone %q, want %q", u.Phone, want)
		}
		hashes[u.PasswordHash] = true
	}
	if len(hashes) != 1 {
		t.Fatalf("%d password hashes, want one shared", len(hashes))
	}
	// The same prefix again collides and creates nothing; another does not.
	_, err = f.s.Provision(ctx, f.db, 30, "1712")
	wantCode(t, err, seckill.EPhoneTaken)
	if _, err := f.db.UserByPhone(ctx, "17120000029"); seckill.ErrorCode(err) != seckill.ENotFound {
		t.Fatalf("phone past the first run: %v", err)
	}
	if _, err := f.s.Provision(ctx, f.db, 1, "1713"); err != nil {
		t.Fatalf("another prefix: %v", err)
	}
	_, err = f.s.Provision(ctx, f.db, 0, "1714")
	wantCode(t, err, seckill.EInvalid)
}
