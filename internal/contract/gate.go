package contract

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"seckill"
)

// TestStockGate checks a StockGate implementation. newGate returns a fresh
// gate holding no sales.
func TestStockGate(t *testing.T, newGate func(t *testing.T) seckill.StockGate) {
	ctx := context.Background()
	res := func(sale, user int64) seckill.Reservation {
		return seckill.Reservation{SaleID: sale, UserID: user, Ticket: fmt.Sprintf("T%d", user), At: time.Now()}
	}
	reserve := func(t *testing.T, g seckill.StockGate, sale, user int64, want seckill.GateResult) {
		t.Helper()
		got, err := g.Reserve(ctx, res(sale, user))
		if err != nil {
			t.Fatalf("Reserve(%d, %d): %v", sale, user, err)
		}
		if got != want {
			t.Fatalf("Reserve(%d, %d) = %v, want %v", sale, user, got, want)
		}
	}
	load := func(t *testing.T, g seckill.StockGate, sale, left int64, buyers []int64) {
		t.Helper()
		if ok, err := g.Load(ctx, sale, seckill.GateState(left, buyers)); err != nil || !ok {
			t.Fatalf("Load(%d) = %v, %v; want true, nil", sale, ok, err)
		}
	}
	release := func(t *testing.T, g seckill.StockGate, sale, user int64, ticket string, want bool) {
		t.Helper()
		got, err := g.Release(ctx, sale, user, ticket)
		if err != nil || got != want {
			t.Fatalf("Release(%d, %d, %q) = %v, %v; want %v, nil", sale, user, ticket, got, err, want)
		}
	}
	left := func(t *testing.T, g seckill.StockGate, sale, want int64) {
		t.Helper()
		n, loaded, err := g.Left(ctx, sale)
		if err != nil || !loaded || n != want {
			t.Fatalf("Left(%d) = %d, %v, %v; want %d, true, nil", sale, n, loaded, err, want)
		}
	}

	t.Run("NotLoaded", func(t *testing.T) {
		g := newGate(t)
		_, err := g.Reserve(ctx, res(1, 1))
		wantCode(t, err, seckill.EBusy)
		if _, loaded, err := g.Left(ctx, 1); loaded || err != nil {
			t.Fatalf("Left of unloaded sale: loaded=%v err=%v", loaded, err)
		}
		release(t, g, 1, 1, "T1", false)
	})

	t.Run("ReserveDuplicateSoldOut", func(t *testing.T) {
		g := newGate(t)
		load(t, g, 7, 2, nil)
		reserve(t, g, 7, 1, seckill.Reserved)
		reserve(t, g, 7, 1, seckill.Duplicate)
		reserve(t, g, 7, 2, seckill.Reserved)
		left(t, g, 7, 0)
		reserve(t, g, 7, 3, seckill.SoldOut)
		// A holder is told duplicate, not sold out.
		reserve(t, g, 7, 2, seckill.Duplicate)
		left(t, g, 7, 0)
	})

	t.Run("LoadWithBuyers", func(t *testing.T) {
		g := newGate(t)
		load(t, g, 3, 5, []int64{10, 11})
		reserve(t, g, 3, 10, seckill.Duplicate)
		reserve(t, g, 3, 12, seckill.Reserved)
		left(t, g, 3, 4)
	})

	t.Run("LoadDoesNotReplaceALoadedSale", func(t *testing.T) {
		// A second load (a rebuild racing another, or racing the sale's
		// creation) would forget reservations on their way to the queue.
		g := newGate(t)
		load(t, g, 3, 5, []int64{10})
		reserve(t, g, 3, 12, seckill.Reserved)
		read := false
		ok, err := g.Load(ctx, 3, func(context.Context) (seckill.GateContents, error) {
			read = true
			return seckill.GateContents{Left: 1}, nil
		})
		if err != nil || ok {
			t.Fatalf("Load of a loaded sale = %v, %v; want false, nil", ok, err)
		}
		if read {
			t.Error("Load of a loaded sale read a snapshot")
		}
		left(t, g, 3, 4)
		reserve(t, g, 3, 10, seckill.Duplicate)
		reserve(t, g, 3, 12, seckill.Duplicate)
		if rs, err := g.Stale(ctx, 3, 0); err != nil || len(rs) != 1 || rs[0].Ticket != "T12" {
			t.Fatalf("Stale = %+v, %v; want T12 still pending", rs, err)
		}
	})

	t.Run("LoadThatLostItsClaim", func(t *testing.T) {
		// A load installs its snapshot only if nothing else loaded or
		// claimed the sale since it claimed it: a newer load took over, or
		// the gate lost its state (and anything admitted meanwhile).
		g := newGate(t)
		slow := func(during func()) seckill.GateSnapshot {
			return func(context.Context) (seckill.GateContents, error) {
				during()
				return seckill.GateContents{Left: 9}, nil // older than what happened during
			}
		}
		// A newer load finishes while the older one reads.
		ok, err := g.Load(ctx, 4, slow(func() { load(t, g, 4, 2, []int64{1}) }))
		if err != nil || ok {
			t.Fatalf("Load overtaken by another = %v, %v; want false, nil", ok, err)
		}
		left(t, g, 4, 2)
		reserve(t, g, 4, 1, seckill.Duplicate)
		// A newer load claims while the older one reads, then finishes
		// after it: the newer snapshot wins.
		type answer struct {
			ok  bool
			err error
		}
		started, proceed := make(chan struct{}), make(chan struct{})
		newer := make(chan answer, 1)
		ok, err = g.Load(ctx, 5, slow(func() {
			go func() {
				ok, err := g.Load(ctx, 5, func(context.Context) (seckill.GateContents, error) {
					close(started)
					<-proceed
					return seckill.GateContents{Left: 3, Buyers: []int64{7}}, nil
				})
				newer <- answer{ok, err}
			}()
			<-started
		}))
		if err != nil || ok {
			t.Fatalf("Load claimed over by another = %v, %v; want false, nil", ok, err)
		}
		if _, loaded, _ := g.Left(ctx, 5); loaded {
			t.Fatal("the older load installed its snapshot")
		}
		close(proceed)
		if a := <-newer; a.err != nil || !a.ok {
			t.Fatalf("the newer Load = %v, %v; want true, nil", a.ok, a.err)
		}
		left(t, g, 5, 3)
		reserve(t, g, 5, 7, seckill.Duplicate)
		// The gate loses its state (a Redis restart, here Forget and
		// Unload) while a load reads: it is refused and the sale stays
		// unloaded until a load with a fresh snapshot.
		for name, lose := range map[string]func() error{
			"Forget": func() error { return g.Forget(ctx, 6) },
			"Unload": func() error { return g.Unload(ctx) },
		} {
			ok, err = g.Load(ctx, 6, slow(func() {
				if err := lose(); err != nil {
					t.Fatal(err)
				}
			}))
			if err != nil || ok {
				t.Fatalf("Load across %s = %v, %v; want false, nil", name, ok, err)
			}
			if _, loaded, _ := g.Left(ctx, 6); loaded {
				t.Fatalf("Load across %s installed its snapshot", name)
			}
		}
		load(t, g, 6, 1, nil)
		left(t, g, 6, 1)
		// A snapshot that fails loads nothing, and the next load works.
		boom := errors.New("snapshot failed")
		if ok, err := g.Load(ctx, 8, func(context.Context) (seckill.GateContents, error) { return seckill.GateContents{}, boom }); !errors.Is(err, boom) || ok {
			t.Fatalf("Load with a failing snapshot = %v, %v; want false, %v", ok, err, boom)
		}
		load(t, g, 8, 2, nil)
		left(t, g, 8, 2)
	})

	t.Run("Release", func(t *testing.T) {
		g := newGate(t)
		load(t, g, 4, 1, nil)
		reserve(t, g, 4, 1, seckill.Reserved)
		reserve(t, g, 4, 2, seckill.SoldOut)
		release(t, g, 4, 1, "T1", true)
		left(t, g, 4, 1)
		// Releasing it again (a retry whose first answer was lost) says
		// released, and gives nothing back twice.
		release(t, g, 4, 1, "T1", true)
		left(t, g, 4, 1)
		// Releasing someone who holds nothing changes nothing; holding
		// nothing and no buyer, they count as released.
		release(t, g, 4, 99, "T99", true)
		left(t, g, 4, 1)
		reserve(t, g, 4, 2, seckill.Reserved)
		// The released user may try again.
		release(t, g, 4, 2, "T2", true)
		reserve(t, g, 4, 1, seckill.Reserved)
	})

	t.Run("ReleaseOnlyTheTicketGiven", func(t *testing.T) {
		// The reconciler releases what it found stale; meanwhile the user
		// may have been released and admitted again, and the newer
		// reservation must stay.
		g := newGate(t)
		load(t, g, 5, 1, []int64{7})
		reserve(t, g, 5, 1, seckill.Reserved) // ticket T1
		release(t, g, 5, 1, "an older ticket", false)
		left(t, g, 5, 0)
		reserve(t, g, 5, 1, seckill.Duplicate)
		// A loaded buyer has no reservation to release.
		release(t, g, 5, 7, "T7", false)
		left(t, g, 5, 0)
		release(t, g, 5, 1, "T1", true)
		left(t, g, 5, 1)
	})

	t.Run("SettleOnlyTheTicketGiven", func(t *testing.T) {
		// A request redelivered after a rebuild settles its own ticket: a
		// newer reservation of the same buyer stays pending, so that a
		// failed publish can still release it.
		g := newGate(t)
		load(t, g, 6, 1, nil)
		reserve(t, g, 6, 1, seckill.Reserved) // ticket T1
		if err := g.Settle(ctx, 6, []seckill.Settled{{UserID: 1, Ticket: "an older ticket"}}); err != nil {
			t.Fatal(err)
		}
		if rs, err := g.Stale(ctx, 6, 0); err != nil || len(rs) != 1 || rs[0].Ticket != "T1" {
			t.Fatalf("Stale after settling another ticket = %+v, %v; want T1 still pending", rs, err)
		}
		release(t, g, 6, 1, "T1", true)
		left(t, g, 6, 1)
		// Settled with its own ticket, a reservation is no longer pending:
		// a release finds nothing and the buyer stays.
		reserve(t, g, 6, 2, seckill.Reserved) // ticket T2
		if err := g.Settle(ctx, 6, []seckill.Settled{{UserID: 2, Ticket: "T2"}}); err != nil {
			t.Fatal(err)
		}
		release(t, g, 6, 2, "T2", false)
		left(t, g, 6, 0)
		reserve(t, g, 6, 2, seckill.Duplicate)
	})

	pending := func(t *testing.T, g seckill.StockGate, sale, user int64, want, wantLoaded bool) {
		t.Helper()
		got, loaded, err := g.Pending(ctx, sale, user)
		if err != nil || got != want || loaded != wantLoaded {
			t.Fatalf("Pending(%d, %d) = %v, %v, %v; want %v, %v, nil", sale, user, got, loaded, err, want, wantLoaded)
		}
	}

	t.Run("Pending", func(t *testing.T) {
		// A reservation is pending from Reserve until it is settled,
		// released or withdrawn, claimed by a writer or not; a buyer
		// loaded from SQL holds none.
		g := newGate(t)
		pending(t, g, 41, 1, false, false)
		load(t, g, 41, 4, []int64{9})
		pending(t, g, 41, 9, false, true)
		for u := int64(1); u <= 4; u++ {
			pending(t, g, 41, u, false, true)
			reserve(t, g, 41, u, seckill.Reserved)
			pending(t, g, 41, u, true, true)
		}
		if got, err := g.Claim(ctx, 41, []seckill.Settled{{UserID: 1, Ticket: "T1"}}); err != nil || len(got) != 1 || !got[0] {
			t.Fatalf("Claim = %v, %v", got, err)
		}
		pending(t, g, 41, 1, true, true)
		if err := g.Settle(ctx, 41, []seckill.Settled{{UserID: 1, Ticket: "T1"}}); err != nil {
			t.Fatal(err)
		}
		pending(t, g, 41, 1, false, true)
		release(t, g, 41, 2, "T2", true)
		pending(t, g, 41, 2, false, true)
		if ok, err := g.Withdraw(ctx, 41, 3, "T3"); err != nil || !ok {
			t.Fatalf("Withdraw = %v, %v", ok, err)
		}
		pending(t, g, 41, 3, false, true)
		pending(t, g, 42, 4, false, false) // another sale
		pending(t, g, 41, 4, true, true)
		if err := g.Forget(ctx, 41); err != nil {
			t.Fatal(err)
		}
		pending(t, g, 41, 4, false, false)
	})

	claim := func(t *testing.T, g seckill.StockGate, sale int64, reqs []seckill.Settled, want ...bool) {
		t.Helper()
		got, err := g.Claim(ctx, sale, reqs)
		if err != nil {
			t.Fatalf("Claim(%d, %v): %v", sale, reqs, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("Claim(%d, %v) = %v, want %v", sale, reqs, got, want)
		}
	}
	stale := func(t *testing.T, g seckill.StockGate, sale int64, want ...string) {
		t.Helper()
		rs, err := g.Stale(ctx, sale, 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range rs {
			got = append(got, r.Ticket)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("Stale(%d) tickets = %v, want %v", sale, got, want)
		}
	}
	st := func(user int64, ticket string) seckill.Settled { return seckill.Settled{UserID: user, Ticket: ticket} }

	t.Run("ClaimThenReleaseIsANoOp", func(t *testing.T) {
		// The writer claimed the request: it becomes an order, so the
		// reconciler's release (which looked before it was queued) must
		// not give its unit to anyone else.
		g := newGate(t)
		load(t, g, 21, 1, nil)
		reserve(t, g, 21, 1, seckill.Reserved)
		claim(t, g, 21, []seckill.Settled{st(1, "T1")}, true)
		stale(t, g, 21) // the writer's now, not the reconciler's
		release(t, g, 21, 1, "T1", false)
		left(t, g, 21, 0)
		reserve(t, g, 21, 1, seckill.Duplicate)
		reserve(t, g, 21, 2, seckill.SoldOut)
		// Settle clears a claimed reservation; the buyer stays.
		if err := g.Settle(ctx, 21, []seckill.Settled{st(1, "T1")}); err != nil {
			t.Fatal(err)
		}
		release(t, g, 21, 1, "T1", false)
		left(t, g, 21, 0)
		reserve(t, g, 21, 1, seckill.Duplicate)
		// Settled, it is still allowed (a redelivery after a lost ack).
		claim(t, g, 21, []seckill.Settled{st(1, "T1")}, true)
	})

	t.Run("ReleaseThenClaimIsRefused", func(t *testing.T) {
		// The request reached the queue after the reconciler released its
		// reservation: its unit is back in stock, it must not become an
		// order.
		g := newGate(t)
		load(t, g, 22, 1, nil)
		reserve(t, g, 22, 1, seckill.Reserved)
		release(t, g, 22, 1, "T1", true)
		claim(t, g, 22, []seckill.Settled{st(1, "T1")}, false)
		left(t, g, 22, 1)
		// The released user tried again: the old ticket stays refused,
		// the new one is claimed, in the order given.
		if r, err := g.Reserve(ctx, seckill.Reservation{SaleID: 22, UserID: 1, Ticket: "T1 again"}); err != nil || r != seckill.Reserved {
			t.Fatalf("Reserve again = %v, %v", r, err)
		}
		claim(t, g, 22, []seckill.Settled{st(1, "T1"), st(1, "T1 again"), st(1, "T1")}, false, true, false)
		left(t, g, 22, 0)
		// Nobody else holds anything: refused, and nothing taken.
		claim(t, g, 22, []seckill.Settled{st(9, "T9")}, false)
		left(t, g, 22, 0)
		reserve(t, g, 22, 9, seckill.SoldOut)
	})

	t.Run("ClaimTwice", func(t *testing.T) {
		// A batch whose SQL write failed is fetched and claimed again.
		g := newGate(t)
		load(t, g, 23, 3, nil)
		reserve(t, g, 23, 1, seckill.Reserved)
		reserve(t, g, 23, 2, seckill.Reserved)
		reserve(t, g, 23, 3, seckill.Reserved)
		batch := []seckill.Settled{st(1, "T1"), st(2, "T2")}
		claim(t, g, 23, batch, true, true)
		claim(t, g, 23, batch, true, true)
		claim(t, g, 23, []seckill.Settled{st(3, "T3"), st(3, "T3")}, true, true)
		stale(t, g, 23)
		left(t, g, 23, 0)
		if err := g.Settle(ctx, 23, batch); err != nil {
			t.Fatal(err)
		}
		stale(t, g, 23)
		claim(t, g, 23, batch, true, true)
	})

	t.Run("ClaimAfterRebuild", func(t *testing.T) {
		// A rebuild loads the buyers of SQL and the queue with nothing
		// pending: their requests still in the queue are allowed, whatever
		// their tickets; anyone else's is refused (its unit is in what the
		// rebuild counted as left).
		g := newGate(t)
		load(t, g, 24, 2, []int64{7})
		claim(t, g, 24, []seckill.Settled{st(7, "T7"), st(8, "T8")}, true, false)
		left(t, g, 24, 2)
		release(t, g, 24, 7, "T7", false)
		reserve(t, g, 24, 7, seckill.Duplicate)
		left(t, g, 24, 2)
	})

	withdraw := func(t *testing.T, g seckill.StockGate, sale, user int64, ticket string, want bool) {
		t.Helper()
		got, err := g.Withdraw(ctx, sale, user, ticket)
		if err != nil || got != want {
			t.Fatalf("Withdraw(%d, %d, %q) = %v, %v; want %v, nil", sale, user, ticket, got, err, want)
		}
	}

	t.Run("Withdraw", func(t *testing.T) {
		// SQL fenced the ticket: its request is never written, so its
		// unit comes back whether or not the writer claimed it, once.
		g := newGate(t)
		_, err := g.Withdraw(ctx, 30, 1, "T1")
		wantCode(t, err, seckill.EBusy) // not loaded: a load may be about to install it
		load(t, g, 30, 3, nil)
		reserve(t, g, 30, 1, seckill.Reserved)
		reserve(t, g, 30, 2, seckill.Reserved)
		reserve(t, g, 30, 3, seckill.Reserved)
		claim(t, g, 30, []seckill.Settled{st(2, "T2")}, true)
		withdraw(t, g, 30, 1, "T1", true) // pending
		withdraw(t, g, 30, 2, "T2", true) // claimed
		left(t, g, 30, 2)
		withdraw(t, g, 30, 1, "T1", false) // once
		withdraw(t, g, 30, 2, "T2", false)
		left(t, g, 30, 2)
		// The withdrawn are no buyers: their requests are refused at the
		// claim, and they may buy again, under a new ticket that an old
		// withdrawal does not touch.
		claim(t, g, 30, []seckill.Settled{st(1, "T1"), st(2, "T2")}, false, false)
		if r, err := g.Reserve(ctx, seckill.Reservation{SaleID: 30, UserID: 1, Ticket: "T1 again"}); err != nil || r != seckill.Reserved {
			t.Fatalf("Reserve again = %v, %v", r, err)
		}
		withdraw(t, g, 30, 1, "T1", false)
		left(t, g, 30, 1)
		// Another ticket, a settled reservation, a buyer with none: no-ops.
		withdraw(t, g, 30, 3, "not T3", false)
		if err := g.Settle(ctx, 30, []seckill.Settled{st(3, "T3")}); err != nil {
			t.Fatal(err)
		}
		withdraw(t, g, 30, 3, "T3", false)
		load(t, g, 31, 1, []int64{7})
		withdraw(t, g, 31, 7, "T7", false)
		left(t, g, 30, 1)
		left(t, g, 31, 1)
		reserve(t, g, 30, 3, seckill.Duplicate)
		stale(t, g, 30, "T1 again")
	})

	t.Run("LoadWithQueued", func(t *testing.T) {
		// A rebuild installs each queued request as a reservation the
		// writer claimed, under its ticket: Claim allows that ticket and
		// refuses another, Release leaves it (the writer's), Stale does
		// not list it, Settle clears it, Withdraw gives its unit back. A
		// user queued under two tickets, or queued and holding an order,
		// is a buyer with no reservation; one request queued twice (a
		// publish retried) is one reservation.
		g := newGate(t)
		ok, err := g.Load(ctx, 32, func(context.Context) (seckill.GateContents, error) {
			return seckill.GateContents{Left: 1, Buyers: []int64{1},
				Queued: []seckill.Settled{st(1, "T1"), st(2, "T2"), st(3, "T3"), st(4, "T4a"), st(4, "T4b"), st(5, "T5"), st(3, "T3")}}, nil
		})
		if err != nil || !ok {
			t.Fatalf("Load = %v, %v", ok, err)
		}
		left(t, g, 32, 1)
		stale(t, g, 32)
		for _, u := range []int64{1, 2, 3, 4, 5} {
			reserve(t, g, 32, u, seckill.Duplicate)
		}
		claim(t, g, 32, []seckill.Settled{st(1, "T1"), st(1, "other"), st(2, "T2"), st(2, "other"), st(4, "T4b"), st(4, "T4a"), st(6, "T6")},
			true, true, true, false, true, true, false)
		release(t, g, 32, 3, "T3", false)
		withdraw(t, g, 32, 4, "T4a", false) // no reservation to withdraw
		withdraw(t, g, 32, 1, "T1", false)
		left(t, g, 32, 1)
		withdraw(t, g, 32, 3, "T3", true)
		left(t, g, 32, 2)
		claim(t, g, 32, []seckill.Settled{st(3, "T3")}, false)
		if err := g.Settle(ctx, 32, []seckill.Settled{st(5, "T5")}); err != nil {
			t.Fatal(err)
		}
		withdraw(t, g, 32, 5, "T5", false)
		claim(t, g, 32, []seckill.Settled{st(5, "T5")}, true)
		reserve(t, g, 32, 3, seckill.Reserved)
		left(t, g, 32, 1)
		stale(t, g, 32, "T3")
		pending(t, g, 32, 2, true, true) // queued, claimed by the load
		pending(t, g, 32, 4, false, true)
	})

	t.Run("ClaimNotLoaded", func(t *testing.T) {
		g := newGate(t)
		_, err := g.Claim(ctx, 25, []seckill.Settled{st(1, "T1")})
		wantCode(t, err, seckill.EBusy)
		// A sale lost after a claim (Redis restarted) is loaded again
		// without it.
		load(t, g, 25, 1, nil)
		reserve(t, g, 25, 1, seckill.Reserved)
		claim(t, g, 25, []seckill.Settled{st(1, "T1")}, true)
		if err := g.Forget(ctx, 25); err != nil {
			t.Fatal(err)
		}
		_, err = g.Claim(ctx, 25, []seckill.Settled{st(1, "T1")})
		wantCode(t, err, seckill.EBusy)
	})

	t.Run("ClaimABigBatch", func(t *testing.T) {
		// More requests than one script of a shared gate carries.
		g := newGate(t)
		const n = 2500
		load(t, g, 26, n, nil)
		var batch []seckill.Settled
		for u := int64(1); u <= n; u++ {
			reserve(t, g, 26, u, seckill.Reserved)
			batch = append(batch, st(u, fmt.Sprintf("T%d", u)))
			if u%2 == 0 {
				release(t, g, 26, u, fmt.Sprintf("T%d", u), true)
			}
		}
		got, err := g.Claim(ctx, 26, batch)
		if err != nil || len(got) != n {
			t.Fatalf("Claim of %d = %d answers, %v", n, len(got), err)
		}
		for i, ok := range got {
			if want := batch[i].UserID%2 == 1; ok != want {
				t.Fatalf("Claim of user %d = %v, want %v", batch[i].UserID, ok, want)
			}
		}
		stale(t, g, 26)
	})

	t.Run("Forget", func(t *testing.T) {
		g := newGate(t)
		for _, sale := range []int64{11, 12} {
			load(t, g, sale, 2, nil)
			reserve(t, g, sale, 1, seckill.Reserved)
		}
		if err := g.Forget(ctx, 11); err != nil {
			t.Fatal(err)
		}
		if _, loaded, err := g.Left(ctx, 11); loaded || err != nil {
			t.Fatalf("Left of a forgotten sale: loaded=%v err=%v", loaded, err)
		}
		if _, err := g.Reserve(ctx, res(11, 2)); seckill.ErrorCode(err) != seckill.EBusy {
			t.Fatalf("Reserve in a forgotten sale: %v, want busy (not loaded)", err)
		}
		if got, err := g.Stale(ctx, 11, 0); err != nil || len(got) != 0 {
			t.Fatalf("Stale of a forgotten sale: %v %v, want none", got, err)
		}
		// The other sale keeps its state; forgetting again is a no-op.
		left(t, g, 12, 1)
		reserve(t, g, 12, 1, seckill.Duplicate)
		if err := g.Forget(ctx, 11); err != nil {
			t.Fatal(err)
		}
		// Loaded again (a rebuild), the sale starts from what it is given.
		load(t, g, 11, 1, []int64{1})
		left(t, g, 11, 1)
		reserve(t, g, 11, 1, seckill.Duplicate)
		reserve(t, g, 11, 2, seckill.Reserved)
	})

	t.Run("Reservations", func(t *testing.T) {
		g := newGate(t)
		load(t, g, 8, 10, []int64{100})
		start := time.Now()
		for u := int64(1); u <= 4; u++ {
			reserve(t, g, 8, u, seckill.Reserved)
		}
		stale := func(olderThan time.Duration) map[int64]seckill.Reservation {
			t.Helper()
			rs, err := g.Stale(ctx, 8, olderThan)
			if err != nil {
				t.Fatal(err)
			}
			m := map[int64]seckill.Reservation{}
			for _, r := range rs {
				m[r.UserID] = r
			}
			return m
		}
		// Every pending reservation is at least 0 old; buyers loaded by
		// Load have none.
		got := stale(0)
		if len(got) != 4 || got[1].Ticket != "T1" || got[2].Ticket != "T2" || got[2].SaleID != 8 || got[100].UserID != 0 {
			t.Fatalf("Stale(0) = %+v, want users 1 to 4 with their tickets", got)
		}
		// Stamped by the gate's clock (Redis's may be a little apart from
		// this process's).
		if at := got[1].At; at.Before(start.Add(-time.Minute)) || at.After(time.Now().Add(time.Minute)) {
			t.Fatalf("reservation stamped %v, want about %v", at, start)
		}
		// Settled reservations are forgotten, the buyers stay.
		if err := g.Settle(ctx, 8, []seckill.Settled{{UserID: 1, Ticket: "T1"}, {UserID: 3, Ticket: "T3"}, {UserID: 999, Ticket: "T999"}}); err != nil {
			t.Fatal(err)
		}
		if got := stale(0); len(got) != 2 || got[2].Ticket != "T2" || got[4].Ticket != "T4" {
			t.Fatalf("Stale after Settle = %+v, want users 2 and 4", got)
		}
		reserve(t, g, 8, 1, seckill.Duplicate)
		// Released reservations are forgotten too.
		release(t, g, 8, 2, "T2", true)
		if got := stale(0); len(got) != 1 || got[4].Ticket != "T4" {
			t.Fatalf("Stale after Release = %+v, want user 4", got)
		}
		// Ages grow: once some time has passed, the reservation is that old.
		time.Sleep(30 * time.Millisecond)
		if got := stale(20 * time.Millisecond); len(got) != 1 || got[4].Ticket != "T4" {
			t.Fatalf("Stale(20ms) 30ms after reserving = %+v, want user 4", got)
		}
		if got := stale(time.Hour); len(got) != 0 {
			t.Fatalf("Stale(1h) = %+v, want none", got)
		}
		// Load starts over with none pending.
		if err := g.Forget(ctx, 8); err != nil {
			t.Fatal(err)
		}
		load(t, g, 8, 5, []int64{4})
		if got := stale(0); len(got) != 0 {
			t.Fatalf("Stale after Load = %+v, want none", got)
		}
		if err := g.Settle(ctx, 77, []seckill.Settled{{UserID: 1, Ticket: "T1"}}); err != nil {
			t.Fatalf("Settle on an unloaded sale: %v", err)
		}
		if rs, err := g.Stale(ctx, 77, 0); err != nil || len(rs) != 0 {
			t.Fatalf("Stale on an unloaded sale: %v, %v", rs, err)
		}
	})

	t.Run("StaleIgnoresTheCallersClock", func(t *testing.T) {
		// Instances' clocks disagree: one far behind claims its fresh
		// reservations are hours old, one far ahead ages them by hours. A
		// reservation made just now is not an hour old, whoever asks.
		g := newGate(t)
		load(t, g, 9, 5, nil)
		for u, at := range map[int64]time.Time{1: time.Now().Add(-2 * time.Hour), 2: time.Now().Add(2 * time.Hour)} {
			r := seckill.Reservation{SaleID: 9, UserID: u, Ticket: fmt.Sprintf("T%d", u), At: at}
			if got, err := g.Reserve(ctx, r); err != nil || got != seckill.Reserved {
				t.Fatalf("Reserve(%d) = %v, %v", u, got, err)
			}
		}
		if rs, err := g.Stale(ctx, 9, time.Hour); err != nil || len(rs) != 0 {
			t.Fatalf("Stale(1h) just after reserving = %+v, %v; want none", rs, err)
		}
		rs, err := g.Stale(ctx, 9, 0)
		if err != nil || len(rs) != 2 {
			t.Fatalf("Stale(0) = %+v, %v; want both", rs, err)
		}
		for _, r := range rs {
			if d := time.Since(r.At); d > time.Minute || d < -time.Minute {
				t.Fatalf("reservation of user %d stamped %v: the caller's clock, not the gate's", r.UserID, r.At)
			}
		}
	})

	t.Run("SalesAreIndependent", func(t *testing.T) {
		g := newGate(t)
		for _, id := range []int64{1, 2} {
			load(t, g, id, 1, nil)
		}
		reserve(t, g, 1, 9, seckill.Reserved)
		reserve(t, g, 2, 9, seckill.Reserved)
		reserve(t, g, 1, 8, seckill.SoldOut)
		left(t, g, 2, 0)
	})

	t.Run("PurchaseBucket", func(t *testing.T) {
		// The per-user purchase limit is one bucket per user and sale,
		// looked at in the step that reserves, before anything else; a
		// press that reserves takes no token, one refused takes one, and
		// so does a release.
		g := newGate(t)
		slow := seckill.Bucket{PerSecond: 0.001, Burst: 2} // no refill within the test
		limited := func(t *testing.T, sale, user int64, b seckill.Bucket, want seckill.GateResult) {
			t.Helper()
			r := res(sale, user)
			r.Limit = b
			got, err := g.Reserve(ctx, r)
			if err != nil {
				t.Fatalf("Reserve(%d, %d, %+v): %v", sale, user, b, err)
			}
			if got != want {
				t.Fatalf("Reserve(%d, %d, %+v) = %v, want %v", sale, user, b, got, want)
			}
		}
		load(t, g, 1, 1, nil)
		load(t, g, 2, 5, nil)
		limited(t, 1, 1, slow, seckill.Reserved)  // no token taken
		limited(t, 1, 1, slow, seckill.Duplicate) // a duplicate takes one
		limited(t, 1, 1, slow, seckill.Duplicate)
		limited(t, 1, 1, slow, seckill.Limited)
		limited(t, 1, 2, slow, seckill.SoldOut) // and so does sold out
		limited(t, 1, 2, slow, seckill.SoldOut)
		limited(t, 1, 2, slow, seckill.Limited)
		// Another sale, another bucket.
		limited(t, 2, 1, slow, seckill.Reserved)
		// A release takes a token: reserving and releasing (a publish
		// that keeps failing) is limited like a refused press. Limited
		// changes nothing else: user 3 takes no unit and does not become
		// a buyer.
		one := seckill.Bucket{PerSecond: 0.001, Burst: 1}
		limited(t, 2, 3, one, seckill.Reserved)
		release(t, g, 2, 3, "T3", true)
		left(t, g, 2, 4)
		limited(t, 2, 3, one, seckill.Limited)
		left(t, g, 2, 4)
		// A release that releases nothing takes nothing: user 4 reserves,
		// a release with another ticket is a no-op, and the duplicate
		// still finds the one token.
		limited(t, 2, 4, one, seckill.Reserved)
		release(t, g, 2, 4, "not T4", false)
		limited(t, 2, 4, one, seckill.Duplicate)
		limited(t, 2, 4, one, seckill.Limited)
		// No bucket asked, none looked at.
		reserve(t, g, 2, 3, seckill.Reserved)
		left(t, g, 2, 2)
		// An unloaded sale takes no token: after it, the user's one token
		// is still there for the duplicate.
		r := res(3, 1)
		r.Limit = one
		_, err := g.Reserve(ctx, r)
		wantCode(t, err, seckill.EBusy)
		load(t, g, 3, 1, nil)
		limited(t, 3, 1, one, seckill.Reserved)
		limited(t, 3, 1, one, seckill.Duplicate)
		limited(t, 3, 1, one, seckill.Limited)
	})

	t.Run("PurchaseBucketRefills", func(t *testing.T) {
		g := newGate(t)
		load(t, g, 1, 1, nil)
		fast := seckill.Bucket{PerSecond: 20, Burst: 1}
		r := res(1, 1)
		r.Limit = fast
		for _, want := range []seckill.GateResult{seckill.Reserved, seckill.Duplicate} {
			if got, err := g.Reserve(ctx, r); err != nil || got != want {
				t.Fatalf("press = %v, %v; want %v", got, err, want)
			}
		}
		// The duplicate took the only token. The bucket refills by the
		// gate's clock: within a second at 20 a second, a press gets past
		// it to the buyer check again.
		deadline := time.Now().Add(5 * time.Second)
		for {
			got, err := g.Reserve(ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			if got == seckill.Duplicate {
				break
			}
			if got != seckill.Limited || time.Now().After(deadline) {
				t.Fatalf("press = %v, want limited until the bucket refills, then duplicate", got)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})

	t.Run("Unload", func(t *testing.T) {
		g := newGate(t)
		load(t, g, 6, 3, nil)
		if err := g.Unload(ctx); err != nil {
			t.Fatal(err)
		}
		_, err := g.Reserve(ctx, res(6, 1))
		wantCode(t, err, seckill.EBusy)
	})

	t.Run("ConcurrentCrowd", func(t *testing.T) {
		// 2,000 users each try 3 times against 500 units: exactly 500
		// distinct users win, nobody twice, nothing left.
		g := newGate(t)
		const stock, users, tries = 500, 2000, 3
		load(t, g, 42, stock, nil)
		var reserved, duplicate, soldOut atomic.Int64
		winners := make([]atomic.Int32, users+1)
		var wg sync.WaitGroup
		for w := 0; w < 32; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < tries; i++ {
					for u := int64(1 + w); u <= users; u += 32 {
						r, err := g.Reserve(ctx, res(42, u))
						if err != nil {
							t.Error(err)
							return
						}
						switch r {
						case seckill.Reserved:
							reserved.Add(1)
							winners[u].Add(1)
						case seckill.Duplicate:
							duplicate.Add(1)
						case seckill.SoldOut:
							soldOut.Add(1)
						}
					}
				}
			}(w)
		}
		wg.Wait()
		if reserved.Load() != stock {
			t.Fatalf("reserved %d units, want %d", reserved.Load(), stock)
		}
		for u := range winners {
			if n := winners[u].Load(); n > 1 {
				t.Fatalf("user %d reserved %d units", u, n)
			}
		}
		if total := reserved.Load() + duplicate.Load() + soldOut.Load(); total != users*tries {
			t.Fatalf("%d answers, want %d", total, users*tries)
		}
		left(t, g, 42, 0)
	})

	t.Run("ReturnOncePerOrder", func(t *testing.T) {
		g := newGate(t)
		if _, err := returnOne(ctx, g, 20, 1); seckill.ErrorCode(err) != seckill.EBusy {
			t.Fatalf("Return to an unloaded sale: %v, want EBusy", err)
		}
		if _, loaded, _ := g.Left(ctx, 20); loaded {
			t.Fatal("Return to an unloaded sale loaded it")
		}
		load(t, g, 20, 1, nil)
		reserve(t, g, 20, 1, seckill.Reserved)
		reserve(t, g, 20, 2, seckill.SoldOut)
		// Order 100 of user 1 is cancelled: its unit comes back once.
		for i, want := range []bool{true, false, false} {
			if ok, err := returnOne(ctx, g, 20, 100); err != nil || ok != want {
				t.Fatalf("Return #%d = %v, %v; want %v, nil", i+1, ok, err, want)
			}
		}
		left(t, g, 20, 1)
		// The canceller stays a buyer; the unit goes to someone else.
		reserve(t, g, 20, 1, seckill.Duplicate)
		reserve(t, g, 20, 2, seckill.Reserved)
		left(t, g, 20, 0)
		// Another order is another unit.
		if ok, err := returnOne(ctx, g, 20, 101); err != nil || !ok {
			t.Fatalf("Return of another order = %v, %v", ok, err)
		}
		left(t, g, 20, 1)
	})

	t.Run("ReturnMany", func(t *testing.T) {
		g := newGate(t)
		if _, err := g.Return(ctx, 23, []int64{1, 2}); seckill.ErrorCode(err) != seckill.EBusy {
			t.Fatalf("Return to an unloaded sale: %v, want EBusy", err)
		}
		ok, err := g.Load(ctx, 23, func(context.Context) (seckill.GateContents, error) {
			return seckill.GateContents{Left: 0, Buyers: []int64{1, 2, 3, 4, 5}, Returned: []int64{7}}, nil
		})
		if err != nil || !ok {
			t.Fatalf("Load = %v, %v", ok, err)
		}
		// One step: orders named twice, or loaded as returned, count nothing.
		if n, err := g.Return(ctx, 23, []int64{1, 2, 2, 7, 3}); err != nil || n != 3 {
			t.Fatalf("Return of 1, 2, 2, 7, 3 = %d, %v; want 3", n, err)
		}
		left(t, g, 23, 3)
		if n, err := g.Return(ctx, 23, []int64{3, 4}); err != nil || n != 1 {
			t.Fatalf("Return of 3 again and 4 = %d, %v; want 1", n, err)
		}
		if n, err := g.Return(ctx, 23, nil); err != nil || n != 0 {
			t.Fatalf("Return of none = %d, %v", n, err)
		}
		many := make([]int64, seckill.MaxReturn+1)
		for i := range many {
			many[i] = int64(1000 + i)
		}
		if n, err := g.Return(ctx, 23, many); err == nil || n != 0 {
			t.Fatalf("Return of %d orders = %d, %v; want an error", len(many), n, err)
		}
		left(t, g, 23, 4)
		// Batches racing on overlapping orders: each unit comes back once.
		var got atomic.Int64
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				batch := make([]int64, 0, 50)
				for o := range int64(50) {
					batch = append(batch, 2000+(o*int64(w+1))%120)
				}
				n, err := g.Return(ctx, 23, batch)
				if err != nil {
					t.Error(err)
				}
				got.Add(int64(n))
			})
		}
		wg.Wait()
		distinct := map[int64]bool{}
		for w := range 8 {
			for o := range int64(50) {
				distinct[2000+(o*int64(w+1))%120] = true
			}
		}
		if got.Load() != int64(len(distinct)) {
			t.Fatalf("%d units came back from racing batches, want %d", got.Load(), len(distinct))
		}
		left(t, g, 23, 4+int64(len(distinct)))
	})

	t.Run("LoadWithReturned", func(t *testing.T) {
		// A gate rebuilt from SQL holds the cancelled orders' units in
		// left already: their Returns must be no-ops.
		g := newGate(t)
		ok, err := g.Load(ctx, 21, func(context.Context) (seckill.GateContents, error) {
			return seckill.GateContents{Left: 2, Buyers: []int64{1, 2}, Returned: []int64{500, 501}}, nil
		})
		if err != nil || !ok {
			t.Fatalf("Load = %v, %v", ok, err)
		}
		for _, o := range []int64{500, 501} {
			if ok, err := returnOne(ctx, g, 21, o); err != nil || ok {
				t.Fatalf("Return of order %d loaded as returned = %v, %v; want false, nil", o, ok, err)
			}
		}
		left(t, g, 21, 2)
		if ok, err := returnOne(ctx, g, 21, 502); err != nil || !ok {
			t.Fatalf("Return of an order cancelled after the snapshot = %v, %v; want true", ok, err)
		}
		left(t, g, 21, 3)
		// Forget drops the returned set with the sale: a new load
		// starts from its own snapshot.
		if err := g.Forget(ctx, 21); err != nil {
			t.Fatal(err)
		}
		load(t, g, 21, 0, nil)
		if ok, err := returnOne(ctx, g, 21, 500); err != nil || !ok {
			t.Fatalf("Return after Forget and a load without returns = %v, %v; want true", ok, err)
		}
	})

	t.Run("ConcurrentReturns", func(t *testing.T) {
		g := newGate(t)
		load(t, g, 22, 0, nil)
		const orders, tries = 50, 8
		var got atomic.Int64
		var wg sync.WaitGroup
		for w := 0; w < tries; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for o := int64(1); o <= orders; o++ {
					ok, err := returnOne(ctx, g, 22, o)
					if err != nil {
						t.Error(err)
						return
					}
					if ok {
						got.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if got.Load() != orders {
			t.Fatalf("%d returns took effect, want %d", got.Load(), orders)
		}
		left(t, g, 22, orders)
	})
}

// returnOne returns the unit of one order through StockGate.Return and
// says whether it came back.
func returnOne(ctx context.Context, g seckill.StockGate, saleID, orderID int64) (bool, error) {
	n, err := g.Return(ctx, saleID, []int64{orderID})
	return n == 1, err
}
