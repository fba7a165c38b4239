package checkout

import (
	"context"
	"strings"
	"testing"
	"time"

	"seckill"
	"seckill/payment"
)

func TestAdmissionLifecycle(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	s := v.openSale(10)
	u := v.users(3)
	e := v.engine(Config{}, nil)

	if e.Ready() {
		t.Fatal("a new engine is ready before Recover")
	}
	// IssuePath needs no gate; Purchase must still wait for Recover.
	p0 := path(t, e, u[0], s.ID)
	_, err := e.Purchase(ctx, u[0], s.ID, p0)
	wantCode(t, err, seckill.EBusy)
	if _, loaded, _ := v.gate.Left(ctx, s.ID); loaded {
		t.Fatal("the gate was loaded before Recover")
	}

	if err := e.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if !e.Ready() {
		t.Fatal("not ready after Recover")
	}
	if _, err := e.Purchase(ctx, u[0], s.ID, p0); err != nil {
		t.Fatalf("purchase after Recover: %v", err)
	}

	e.StopAdmitting()
	if e.Ready() {
		t.Fatal("ready after StopAdmitting")
	}
	left := v.gateLeft(s.ID)
	_, err = e.Purchase(ctx, u[1], s.ID, path(t, e, u[1], s.ID))
	wantCode(t, err, seckill.EBusy)
	if got := v.gateLeft(s.ID); got != left {
		t.Errorf("a refused purchase moved the gate from %d to %d", left, got)
	}
	if got := result(t, e, u[1], s.ID); got.Status != seckill.ResultNone {
		t.Errorf("result after a refused purchase: %+v, want none", got)
	}

	// Recover again reopens (and drains what the first purchase queued).
	if err := e.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Purchase(ctx, u[1], s.ID, path(t, e, u[1], s.ID)); err != nil {
		t.Fatalf("purchase after the second Recover: %v", err)
	}
	e.Close()
	_, err = e.Purchase(ctx, u[2], s.ID, path(t, e, u[2], s.ID))
	wantCode(t, err, seckill.EBusy)
}

func TestValidateSale(t *testing.T) {
	now := time.Now()
	valid := func() *seckill.Sale {
		return &seckill.Sale{
			Name: "phone", Description: "a phone", ImageURL: "/img/phone.png",
			PriceCents: 99900, OriginalPriceCents: 199900, Stock: 100,
			StartsAt: now, EndsAt: now.Add(time.Hour),
		}
	}
	tests := []struct {
		name   string
		modify func(s *seckill.Sale)
		want   string // part of the message; "" means valid
	}{
		{"valid", func(*seckill.Sale) {}, ""},
		{"name empty", func(s *seckill.Sale) { s.Name = "" }, "name"},
		{"name 200 bytes", func(s *seckill.Sale) { s.Name = strings.Repeat("n", 200) }, ""},
		{"name 201 bytes", func(s *seckill.Sale) { s.Name = strings.Repeat("n", 201) }, "name"},
		{"name counted in bytes", func(s *seckill.Sale) { s.Name = strings.Repeat("秒", 67) }, "name"},
		{"name with NUL", func(s *seckill.Sale) { s.Name = "pho\x00ne" }, "NUL"},
		{"description not UTF-8", func(s *seckill.Sale) { s.Description = "bad\xff" }, "UTF-8"},
		{"image_url with NUL", func(s *seckill.Sale) { s.ImageURL = "/a\x00.png" }, "NUL"},
		{"description empty", func(s *seckill.Sale) { s.Description = "" }, ""},
		{"description 10000 bytes", func(s *seckill.Sale) { s.Description = strings.Repeat("d", 10000) }, ""},
		{"description 10001 bytes", func(s *seckill.Sale) { s.Description = strings.Repeat("d", 10001) }, "description"},
		{"image_url 1024 bytes", func(s *seckill.Sale) { s.ImageURL = strings.Repeat("i", 1024) }, ""},
		{"image_url 1025 bytes", func(s *seckill.Sale) { s.ImageURL = strings.Repeat("i", 1025) }, "image_url"},
		{"price zero", func(s *seckill.Sale) { s.PriceCents = 0 }, "at least 1"},
		{"price one cent", func(s *seckill.Sale) { s.PriceCents, s.OriginalPriceCents = 1, 0 }, ""},
		{"price at the provider's limit", func(s *seckill.Sale) { s.PriceCents, s.OriginalPriceCents = payment.MaxAmountCents, 0 }, ""},
		{"price over the provider's limit", func(s *seckill.Sale) { s.PriceCents, s.OriginalPriceCents = payment.MaxAmountCents+1, 0 }, "at most"},
		{"original price over the provider's limit", func(s *seckill.Sale) { s.OriginalPriceCents = payment.MaxAmountCents + 1 }, "at most"},
		{"price negative", func(s *seckill.Sale) { s.PriceCents = -1 }, "prices"},
		{"original price negative", func(s *seckill.Sale) { s.OriginalPriceCents = -1 }, "prices"},
		{"price above original", func(s *seckill.Sale) { s.PriceCents = s.OriginalPriceCents + 1 }, "must not be above the original price"},
		{"price equals original", func(s *seckill.Sale) { s.PriceCents = s.OriginalPriceCents }, ""},
		{"no original price", func(s *seckill.Sale) { s.OriginalPriceCents = 0 }, ""},
		{"stock zero", func(s *seckill.Sale) { s.Stock = 0 }, "stock"},
		{"stock negative", func(s *seckill.Sale) { s.Stock = -5 }, "stock"},
		{"stock one", func(s *seckill.Sale) { s.Stock = 1 }, ""},
		{"stock max", func(s *seckill.Sale) { s.Stock = seckill.MaxStock }, ""},
		{"stock over max", func(s *seckill.Sale) { s.Stock = seckill.MaxStock + 1 }, "stock"},
		{"no start", func(s *seckill.Sale) { s.StartsAt = time.Time{} }, "starts_at"},
		{"no end", func(s *seckill.Sale) { s.EndsAt = time.Time{} }, "ends_at"},
		{"ends at start", func(s *seckill.Sale) { s.EndsAt = s.StartsAt }, "ends_at must be after"},
		{"ends before start", func(s *seckill.Sale) { s.EndsAt = s.StartsAt.Add(-time.Second) }, "ends_at must be after"},
		{"ends a nanosecond after start", func(s *seckill.Sale) { s.EndsAt = s.StartsAt.Add(1) }, ""},
		{"starts before 2000", func(s *seckill.Sale) { s.StartsAt = time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC) }, "years 2000 to 2199"},
		{"ends in 2200", func(s *seckill.Sale) { s.EndsAt = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC) }, "years 2000 to 2199"},
		{"ends in year 10000 UTC", func(s *seckill.Sale) {
			s.EndsAt = time.Date(9999, 12, 31, 23, 59, 59, 0, time.FixedZone("", -3600))
		}, "years 2000 to 2199"},
		{"ends at the end of 2199", func(s *seckill.Sale) { s.EndsAt = time.Date(2199, 12, 31, 23, 59, 59, 0, time.UTC) }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := valid()
			tt.modify(s)
			err := ValidateSale(s)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			wantCode(t, err, seckill.EInvalid)
			if msg := seckill.ErrorMessage(err); !strings.Contains(msg, tt.want) {
				t.Errorf("message %q does not mention %q", msg, tt.want)
			}
		})
	}
}

func TestCreateSale(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	e := v.recovered(Config{}, nil)
	cet := time.FixedZone("CET", 3600)
	now := time.Now().In(cet)

	bad := &seckill.Sale{Name: "phone", Stock: 0, StartsAt: now, EndsAt: now.Add(time.Hour)}
	wantCode(t, e.CreateSale(ctx, bad), seckill.EInvalid)
	if sales, err := e.Sales(ctx); err != nil || len(sales) != 0 {
		t.Fatalf("an invalid sale was stored: %d sales, %v", len(sales), err)
	}

	s := &seckill.Sale{Name: "phone", PriceCents: 100, Stock: 7, StartsAt: now, EndsAt: now.Add(time.Hour)}
	if err := e.CreateSale(ctx, s); err != nil {
		t.Fatal(err)
	}
	if s.ID == 0 || s.StockLeft != 7 || s.StartsAt.Location() != time.UTC || s.EndsAt.Location() != time.UTC {
		t.Errorf("created sale %+v: want an id, stock_left 7 and UTC times", s)
	}
	if got := v.gateLeft(s.ID); got != 7 {
		t.Errorf("gate left %d, want the stock 7", got)
	}
	// Loaded at once: the sale admits without another Recover.
	u := v.users(1)
	if _, err := e.Purchase(ctx, u[0], s.ID, path(t, e, u[0], s.ID)); err != nil {
		t.Fatalf("purchase in a new sale: %v", err)
	}

	// Times are kept to the millisecond, as every store does: two within
	// one millisecond are one time (a sale never open), and the answer
	// shows what a read of the sale shows.
	second := now.Truncate(time.Second).Add(time.Hour)
	same := &seckill.Sale{Name: "phone", PriceCents: 100, Stock: 1, StartsAt: second.Add(100 * time.Microsecond), EndsAt: second.Add(900 * time.Microsecond)}
	wantCode(t, e.CreateSale(ctx, same), seckill.EInvalid)
	fine := &seckill.Sale{Name: "phone", PriceCents: 100, Stock: 1, StartsAt: second.Add(123456789), EndsAt: second.Add(time.Hour + 987654321)}
	if err := e.CreateSale(ctx, fine); err != nil {
		t.Fatal(err)
	}
	stored, err := v.db.Sale(ctx, fine.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !fine.StartsAt.Equal(stored.StartsAt) || !fine.EndsAt.Equal(stored.EndsAt) || fine.StartsAt.Nanosecond() != 123000000 {
		t.Errorf("created with %v – %v, stored %v – %v: want both to the millisecond, equal", fine.StartsAt, fine.EndsAt, stored.StartsAt, stored.EndsAt)
	}
}

func TestTicketsSortByTime(t *testing.T) {
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	seen := map[string]bool{}
	prev := ""
	for i := range 20_000 {
		tk := ticketAt(at.Add(time.Duration(i/10) * time.Millisecond))
		if len(tk) != 20 || strings.Trim(tk, ticketAlphabet) != "" {
			t.Fatalf("ticket %q: want 20 characters of %s", tk, ticketAlphabet)
		}
		if seen[tk] {
			t.Fatalf("ticket %q issued twice", tk)
		}
		seen[tk] = true
		// Tickets of a later millisecond sort after every earlier one.
		if i%10 == 0 && tk <= prev {
			t.Fatalf("ticket %d %q sorts before %q of an earlier millisecond", i, tk, prev)
		}
		prev = max(prev, tk)
	}
	if a, b := ticketAt(at), ticketAt(at); a[:10] != b[:10] || a == b {
		t.Fatalf("same millisecond: %q %q: want a shared time part and distinct random parts", a, b)
	}
}
