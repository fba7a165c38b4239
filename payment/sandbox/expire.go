package sandbox

import (
	"context"

	"seckill/payment"
)

// closeExpired closes the waiting trades whose expiry (the create's
// time_expire) has come on the sandbox's clock, as the real provider
// does: each becomes TRADE_CLOSED and owes its notification, exactly as
// after the shop's close, whether or not anyone opens its page. One round
// closes at most a batch, in one transaction, read off the index of
// waiting trades by expiry; the notifier comes round again at once while
// more are due (nextWork). It returns how many it closed.
func (s *Sandbox) closeExpired(ctx context.Context) (int, error) {
	now := s.cfg.Now()
	ps, err := s.store.expiring(ctx, now, batch)
	if err != nil || len(ps) == 0 {
		return 0, err
	}
	// A trade paid or closed since it was read is left as it is.
	n, _, err := s.settle(ctx, payment.TradeClosed, ps...)
	if err != nil {
		return 0, err
	}
	if n > 0 {
		s.log.Info("sandbox: trades expired", "closed", n, "first", ps[0].OutTradeNo)
	}
	return n, nil
}
