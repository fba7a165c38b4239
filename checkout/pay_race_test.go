package checkout

import (
	"context"
	"sync/atomic"
	"testing"

	"seckill"
	"seckill/payment"
)

// createRace is a provider whose CreatePayment runs before first: what
// happens at the provider between Pay's mark and the trade's creation (a
// slow or retried create lets a cancel's close arrive first).
type createRace struct {
	payment.Provider
	before func()
	closes atomic.Int64 // ClosePayment calls answered
}

func (c *createRace) CreatePayment(ctx context.Context, req payment.PaymentRequest) (payment.Payment, error) {
	c.before()
	return c.Provider.CreatePayment(ctx, req)
}

func (c *createRace) ClosePayment(ctx context.Context, orderNo string) error {
	defer c.closes.Add(1)
	return c.Provider.ClosePayment(ctx, orderNo)
}

// TestCancelBetweenMarkAndCreate: the buyer asks to pay, Pay marks the
// order, and before the provider has the trade the order is cancelled
// (by its buyer in another tab, or by the sweeper as the deadline
// passes). The cancel sees the mark and asks the provider to close, which
// finds no trade yet; then the trade is created. Without a second look
// after the create, that trade stays open at the provider and the buyer
// can pay a cancelled order (the money would be refunded). Pay must close
// it and answer "not payable". Run against the sandbox provider, which,
// like the real one, answers a close of an unknown trade TRADE_NOT_EXIST.
func TestCancelBetweenMarkAndCreate(t *testing.T) {
	for _, by := range []string{"buyer", "sweeper"} {
		t.Run(by, func(t *testing.T) {
			v := newEnv(t)
			ctx := context.Background()
			s, us := v.soldOut(1)
			_, client := sandboxPayments(t, nil, nil)
			clock := &sharedClock{}
			var e *Engine
			o := v.orderOf(s.ID, us[0])
			race := &createRace{Provider: client}
			race.before = func() {
				race.before = func() {} // only the first create races
				if by == "buyer" {
					if _, err := e.Cancel(ctx, o.UserID, o.ID); err != nil {
						t.Errorf("cancel: %v", err)
					}
				} else {
					clock.pastDeadlines()
					if n, err := e.Sweep(ctx); err != nil || n != 1 {
						t.Errorf("Sweep = %d, %v; want 1 cancelled", n, err)
					}
				}
				// The cancel's close reaches the provider before the create.
				waitFor(t, "the cancel's close", func() bool { return race.closes.Load() == 1 })
			}
			b := v.backends()
			b.Payments, b.Clock = race, clock
			e = v.recovered(Config{}, &b)

			p, err := e.Pay(ctx, o.UserID, o.ID, "http://shop.test/n", "")
			wantStatus(t, v.order(o.ID), seckill.OrderCancelled)
			tr, qerr := client.QueryPayment(ctx, o.OrderNo)
			if qerr == nil && tr.Status == payment.TradeWaiting {
				t.Fatalf("the trade of cancelled order %d is open at the provider (Pay answered %+v, %v): its buyer can still pay it", o.ID, p, err)
			}
			wantCode(t, err, seckill.ENotPayable)
			// Paying again is refused too, and creates nothing.
			_, err = e.Pay(ctx, o.UserID, o.ID, "http://shop.test/n", "")
			wantCode(t, err, seckill.ENotPayable)
			v.checkAtRest(s.ID)
		})
	}
}
