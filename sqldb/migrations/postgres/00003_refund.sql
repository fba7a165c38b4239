-- Refunds of paid orders (paid → refunded): the order's refunded_at, a
-- 'refund' reason in the stock ledger (its unit goes back on sale through
-- the same outbox as a cancel's), and an index to find the payment that
-- paid an order.

-- +goose Up
ALTER TABLE orders ADD COLUMN refunded_at TIMESTAMPTZ;

-- The CHECK of 00001 has PostgreSQL's default name. The new one allows
-- more, so every row passes its check.
ALTER TABLE stock_ledger
    DROP CONSTRAINT stock_ledger_reason_check,
    ADD CONSTRAINT stock_ledger_reason_check CHECK (reason IN ('initial', 'order', 'cancel', 'refund'));

-- RefundOrder moves the order's applied payment to refund_due.
CREATE INDEX payments_order ON payments (order_id);

-- +goose Down
DROP INDEX payments_order;
-- Fails while refund rows exist: they cannot go back under the old CHECK.
ALTER TABLE stock_ledger
    DROP CONSTRAINT stock_ledger_reason_check,
    ADD CONSTRAINT stock_ledger_reason_check CHECK (reason IN ('initial', 'order', 'cancel'));
ALTER TABLE orders DROP COLUMN refunded_at;
