-- The mark that an order's payment was opened at the provider
-- (MarkPayOpened, taken before the trade is created). A cancel closes the
-- payment only of a marked order: most buyers who let an order lapse never
-- opened the pay page, have no trade to close, and a sale's worth of
-- useless closes would crowd out the ones that matter.

-- +goose Up
ALTER TABLE orders ADD COLUMN pay_opened INTEGER NOT NULL DEFAULT 0;

-- A pending order may have had its page opened before the mark existed:
-- it is taken as opened (closing a trade that does not exist is
-- harmless; leaving one open is not). Orders that are no longer pending
-- are never cancelled again, so their mark does not matter. The pending
-- orders are read through orders_status_deadline.
UPDATE orders SET pay_opened = 1 WHERE status = 'pending_payment';

-- +goose Down
ALTER TABLE orders DROP COLUMN pay_opened;
