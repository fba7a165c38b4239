package inmem

import (
	"cmp"
	"context"
	"slices"
	"sort"
	"time"

	"seckill"
)

var (
	_ seckill.OrderLifecycle = (*Store)(nil)
	_ seckill.Clock          = (*Store)(nil)
)

// lifecycle is the Store's state of the order lifecycle that is not an
// order's own: the payments table and the stock ledger's 'cancel' and
// 'refund' rows. It is guarded by Store.mu like everything else, so a
// cancel (order, stock_left, ledger row), a refund (the same and the
// payment) and a payment (order, payment) are each one step, as one SQL
// transaction is, and every read sees the state between two of them.
type lifecycle struct {
	payments []*seckill.Payment          // by id: oldest first
	byTrade  map[string]*seckill.Payment // trade number → payment: the unique key
	applied  map[int64]*seckill.Payment  // order → the payment that paid it
	returns  []seckill.StockReturn       // cancel and refund rows not yet applied to the gate, by ledger id
	lastPay  int64
	lastRow  int64 // ledger ids of the cancel and refund rows
}

// saleLifecycle is a sale's share of the lifecycle, kept with the sale so
// that LifecycleStats and the snapshots read it without a scan.
type saleLifecycle struct {
	returned  []int64 // the sale's cancelled and refunded orders, in the order they moved
	refundDue int64   // payments refund_due
	refunded  int64   // payments refunded
	unapplied int64   // cancel rows not yet applied to the gate
}

func newLifecycle() lifecycle {
	return lifecycle{byTrade: make(map[string]*seckill.Payment), applied: make(map[int64]*seckill.Payment)}
}

// Now returns the store's clock (the one NewStoreClock was given), at
// millisecond precision in UTC: in one process it is the clock every
// engine on this store shares. It never fails.
func (s *Store) Now(context.Context) (time.Time, error) { return stamp(s.now()), nil }

// CancelOrder moves the order pending_payment → cancelled and gives its
// unit back to stock_left with a 'cancel' ledger row the gate has not
// applied, in one step; see seckill.OrderLifecycle for the contract.
func (s *Store) CancelOrder(_ context.Context, orderID, userID int64, now time.Time, onlyIfExpired bool) (*seckill.Order, error) {
	now = stamp(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[orderID]
	if !ok || userID != 0 && o.UserID != userID {
		return nil, seckill.Errorf(seckill.ENotFound, "no order %d", orderID)
	}
	if o.Status != seckill.OrderPending {
		return nil, seckill.Errorf(seckill.ENotCancellable, "order %d is %s", orderID, o.Status)
	}
	if onlyIfExpired && o.PayDeadline.After(now) {
		return nil, seckill.Errorf(seckill.ENotCancellable, "order %d is not past its deadline", orderID)
	}
	o.Status, o.CancelledAt = seckill.OrderCancelled, &now
	s.giveBack(o)
	c := *o
	return &c, nil
}

// CancelExpired cancels, of the orders ids names, those pending and past
// their deadline, as CancelOrder(…, 0, now, true) would each, in one step;
// see seckill.OrderLifecycle for the contract.
func (s *Store) CancelExpired(_ context.Context, ids []int64, now time.Time) ([]*seckill.Order, error) {
	now = stamp(now)
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*seckill.Order
	for _, id := range ids {
		o, ok := s.orders[id]
		if !ok || o.Status != seckill.OrderPending || o.PayDeadline.After(now) {
			continue
		}
		at := now // each order its own: a caller may keep one and not the rest
		o.Status, o.CancelledAt = seckill.OrderCancelled, &at
		s.giveBack(o)
		c := *o
		out = append(out, &c)
	}
	return out, nil
}

// MarkPayOpened marks the pending order's payment opened, in one step
// with respect to CancelOrder (both hold s.mu); see
// seckill.OrderLifecycle for the contract.
func (s *Store) MarkPayOpened(_ context.Context, orderID int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[orderID]
	if !ok {
		return seckill.Errorf(seckill.ENotFound, "no order %d", orderID)
	}
	if o.Status != seckill.OrderPending {
		return seckill.Errorf(seckill.ENotPayable, "order %d is %s", orderID, o.Status)
	}
	o.PayOpened = true
	return nil
}

// RefundOrder moves the paid order to refunded, gives its unit back to
// stock_left with a 'refund' ledger row the gate has not applied, and
// makes the payment that paid it refund_due, in one step; see
// seckill.OrderLifecycle for the contract.
func (s *Store) RefundOrder(_ context.Context, orderID int64, now time.Time) (*seckill.Order, error) {
	now = stamp(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[orderID]
	if !ok {
		return nil, seckill.Errorf(seckill.ENotFound, "no order %d", orderID)
	}
	if o.Status != seckill.OrderPaid {
		return nil, seckill.Errorf(seckill.ENotCancellable, "order %d is %s, not paid", orderID, o.Status)
	}
	o.Status, o.RefundedAt = seckill.OrderRefunded, &now
	s.giveBack(o)
	if p := s.lc.applied[o.ID]; p != nil {
		p.Outcome = seckill.PaymentRefundDue
		s.sales[o.SaleID].refundDue++
		delete(s.lc.applied, o.ID)
	}
	c := *o
	return &c, nil
}

// giveBack adds the unit of o, just cancelled or refunded, back to its
// sale's stock_left with a ledger row the gate has not applied. s.mu is
// held.
func (s *Store) giveBack(o *seckill.Order) {
	// Every order's sale exists: WriteOrders inserts none without it, and
	// sales are never deleted.
	ss := s.sales[o.SaleID]
	ss.s.StockLeft++
	ss.ledger++
	ss.returned = append(ss.returned, o.ID)
	ss.unapplied++
	s.lc.lastRow++
	s.lc.returns = append(s.lc.returns, seckill.StockReturn{LedgerID: s.lc.lastRow, SaleID: o.SaleID, OrderID: o.ID})
}

// ExpiredOrders returns up to limit pending orders past their deadline,
// earliest deadline first, then by id, after the order after (none: from
// the first). Unlike SQL's it reads every order:
// an in-memory store holds few enough for that.
func (s *Store) ExpiredOrders(_ context.Context, now time.Time, after seckill.OrderRef, limit int) ([]seckill.OrderRef, error) {
	now = stamp(now)
	s.mu.RLock()
	var refs []seckill.OrderRef
	for _, o := range s.orders {
		if after.ID != 0 && (o.PayDeadline.Before(after.PayDeadline) || o.PayDeadline.Equal(after.PayDeadline) && o.ID <= after.ID) {
			continue
		}
		if o.Status == seckill.OrderPending && !o.PayDeadline.After(now) {
			refs = append(refs, seckill.OrderRef{ID: o.ID, SaleID: o.SaleID, UserID: o.UserID, OrderNo: o.OrderNo, PayDeadline: o.PayDeadline, PayOpened: o.PayOpened})
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(refs, func(a, b seckill.OrderRef) int {
		if c := a.PayDeadline.Compare(b.PayDeadline); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return refs[:min(len(refs), max(limit, 0))], nil
}

// ApplyPayment records p once per trade number and moves its order to
// paid, or records it refund_due when the order cannot take it, in one
// step; see seckill.OrderLifecycle for the contract.
func (s *Store) ApplyPayment(_ context.Context, p seckill.Payment) (*seckill.Payment, *seckill.Order, error) {
	if p.TradeNo == "" {
		return nil, nil, seckill.Errorf(seckill.EInvalid, "payment without a trade number")
	}
	created := stamp(s.now())
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec, ok := s.lc.byTrade[p.TradeNo]; ok {
		if rec.OrderNo != p.OrderNo || rec.AmountCents != p.AmountCents {
			return nil, nil, seckill.Errorf(seckill.EInvalid, "trade %q is recorded for order %q, %d cents",
				p.TradeNo, rec.OrderNo, rec.AmountCents)
		}
		r, o := *rec, *s.orders[rec.OrderID]
		return &r, &o, nil
	}
	id, ok := s.byNo[p.OrderNo]
	if !ok {
		return nil, nil, seckill.Errorf(seckill.ENotFound, "no order %q", p.OrderNo)
	}
	o := s.orders[id]
	if p.AmountCents != o.PriceCents {
		return nil, nil, seckill.Errorf(seckill.EAmountMismatch, "paid %d cents for an order of %d", p.AmountCents, o.PriceCents)
	}
	p.PaidAt = stamp(p.PaidAt)
	ss := s.sales[o.SaleID]
	if o.Status == seckill.OrderPending {
		paidAt := p.PaidAt
		o.Status, o.PaidAt = seckill.OrderPaid, &paidAt
		p.Outcome = seckill.PaymentApplied
	} else {
		p.Outcome = seckill.PaymentRefundDue
		ss.refundDue++
	}
	s.lc.lastPay++
	p.ID, p.OrderID, p.SaleID, p.CreatedAt, p.RefundedAt = s.lc.lastPay, o.ID, o.SaleID, created, nil
	rec := p
	s.lc.payments = append(s.lc.payments, &rec)
	s.lc.byTrade[p.TradeNo] = &rec
	if p.Outcome == seckill.PaymentApplied {
		s.lc.applied[o.ID] = &rec
	}
	oc := *o
	return &p, &oc, nil
}

// MarkRefunded moves the payment refund_due → refunded; see
// seckill.OrderLifecycle for the contract.
func (s *Store) MarkRefunded(_ context.Context, tradeNo string, now time.Time) error {
	now = stamp(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.lc.byTrade[tradeNo]
	switch {
	case !ok:
		return seckill.Errorf(seckill.ENotFound, "no payment %q", tradeNo)
	case p.Outcome == seckill.PaymentRefunded:
		return nil
	case p.Outcome != seckill.PaymentRefundDue:
		return seckill.Errorf(seckill.EInvalid, "payment %q is %s, not refund_due", tradeNo, p.Outcome)
	}
	// A new time, not one changed in place: copies handed out share the
	// old pointer.
	p.Outcome, p.RefundedAt = seckill.PaymentRefunded, &now
	ss := s.sales[p.SaleID]
	ss.refundDue--
	ss.refunded++
	return nil
}

// PaymentsToRefund returns up to limit refund_due payments with ids above
// afterID, in id order. It walks the payments from the first with a
// larger id (they are kept in id order).
func (s *Store) PaymentsToRefund(_ context.Context, afterID int64, limit int) ([]seckill.Payment, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	from := sort.Search(len(s.lc.payments), func(i int) bool { return s.lc.payments[i].ID > afterID })
	var ps []seckill.Payment
	for _, p := range s.lc.payments[from:] {
		if len(ps) >= limit {
			break
		}
		if p.Outcome == seckill.PaymentRefundDue {
			ps = append(ps, *p)
		}
	}
	return ps, nil
}

// UnappliedReturns returns up to limit 'cancel' and 'refund' ledger rows not yet
// applied to the gate with ids above afterID, oldest first.
func (s *Store) UnappliedReturns(_ context.Context, afterID int64, limit int) ([]seckill.StockReturn, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	rs := s.lc.returns // by ledger id
	i, _ := slices.BinarySearchFunc(rs, afterID+1, func(r seckill.StockReturn, id int64) int { return cmp.Compare(r.LedgerID, id) })
	rs = rs[i:]
	return slices.Clone(rs[:min(len(rs), max(limit, 0))]), nil
}

// MarkReturnsApplied marks the ledger rows applied to the gate, at once.
// Unknown or already marked ids are ignored.
func (s *Store) MarkReturnsApplied(_ context.Context, ledgerIDs []int64) error {
	if len(ledgerIDs) == 0 {
		return nil
	}
	marked := make(map[int64]bool, len(ledgerIDs))
	for _, id := range ledgerIDs {
		marked[id] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lc.returns = slices.DeleteFunc(s.lc.returns, func(r seckill.StockReturn) bool {
		if marked[r.LedgerID] {
			s.sales[r.SaleID].unapplied--
			return true
		}
		return false
	})
	return nil
}

// ReturnedOrders returns the ids of the sale's cancelled and refunded
// orders, in id order; none for no such sale.
func (s *Store) ReturnedOrders(_ context.Context, saleID int64) ([]int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var ids []int64
	if ss, ok := s.sales[saleID]; ok {
		ids = sortedClone(ss.returned)
	}
	return ids, nil
}

// SaleSnapshotWithReturns is SaleSnapshot plus the sale's returned
// orders, read under the same lock. ENotFound if there is no such sale.
func (s *Store) SaleSnapshotWithReturns(_ context.Context, saleID int64) (int64, []int64, []int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ss, ok := s.sales[saleID]
	if !ok {
		return 0, nil, nil, seckill.Errorf(seckill.ENotFound, "no sale %d", saleID)
	}
	return ss.s.StockLeft, sortedClone(ss.buyers), sortedClone(ss.returned), nil
}

// LifecycleStats returns the sale's refunds due and done and its
// unapplied returns. ENotFound if there is no such sale.
func (s *Store) LifecycleStats(_ context.Context, saleID int64) (*seckill.LifecycleStats, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ss, ok := s.sales[saleID]
	if !ok {
		return nil, seckill.Errorf(seckill.ENotFound, "no sale %d", saleID)
	}
	return &seckill.LifecycleStats{RefundsDue: ss.refundDue, PaymentsRefunded: ss.refunded, ReturnsUnapplied: ss.unapplied}, nil
}

// sortedClone returns a sorted copy of ids, nil for none.
func sortedClone(ids []int64) []int64 {
	if len(ids) == 0 {
		return nil
	}
	c := slices.Clone(ids)
	slices.Sort(c)
	return c
}
