package sandbox

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"seckill/payment"
)

// TestOpenStoreMadeBeforeExpiry: a sandbox.db made before trades had an
// expiry (version 0, with a waiting trade in it) opens: the trade is
// there without one, new trades keep theirs, and opening again changes
// nothing.
func TestOpenStoreMadeBeforeExpiry(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	old, err := sql.Open("sqlite", filepath.Join(dir, "sandbox.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.ExecContext(ctx, schema); err != nil {
		t.Fatal(err)
	}
	if _, err := old.ExecContext(ctx, `INSERT INTO payments (trade_no, out_trade_no, amount_cents, subject, notify_url, return_url, status, created_at)
		VALUES ('2026T0', 'T0', 100, 'x', 'http://shop.test/n', '', 'WAIT_BUYER_PAY', 1)`); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	expires := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for range 2 {
		s, err := openStore(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		var version int
		if err := s.db.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil || version != len(migrations) {
			t.Fatalf("user_version %d, %v; want %d", version, err, len(migrations))
		}
		p, err := s.byOrderNo(ctx, s.db, "T0")
		if err != nil || !p.ExpiresAt.IsZero() || p.expired(expires.Add(time.Hour)) {
			t.Fatalf("the old trade: %+v, %v; want it without an expiry", p, err)
		}
		if _, err := s.byOrderNo(ctx, s.db, "T1"); err == errNoPayment {
			err = s.inTx(ctx, func(tx *sql.Tx) error {
				return insertPayment(ctx, tx, &trade{TradeNo: "2026T1", OutTradeNo: "T1", AmountCents: 100, Subject: "x",
					NotifyURL: "http://shop.test/n", Status: string(payment.TradeWaiting), CreatedAt: expires, ExpiresAt: expires})
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		ps, err := s.expiring(ctx, expires, 10)
		if err != nil || len(ps) != 1 || ps[0].OutTradeNo != "T1" || !ps[0].ExpiresAt.Equal(expires) {
			t.Fatalf("expiring: %+v, %v; want T1 alone", ps, err)
		}
		if err := s.close(); err != nil {
			t.Fatal(err)
		}
	}
}
