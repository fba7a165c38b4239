-- Refunds of paid orders (paid → refunded): the order's refunded_at, a
-- 'refund' reason in the stock ledger (its unit goes back on sale through
-- the same outbox as a cancel's), and an index to find the payment that
-- paid an order.
--
-- SQLite cannot alter a CHECK constraint: stock_ledger is rebuilt with the
-- new one and every row copied, ids and gate_applied included (SQLite's
-- documented procedure; nothing references stock_ledger, so no foreign
-- key needs to be switched off). The migration is one transaction.

-- +goose Up
ALTER TABLE orders ADD COLUMN refunded_at INTEGER;

CREATE TABLE stock_ledger_new (
    id           INTEGER PRIMARY KEY,
    sale_id      INTEGER NOT NULL REFERENCES sales (id),
    order_id     INTEGER REFERENCES orders (id),
    delta        INTEGER NOT NULL,
    reason       TEXT    NOT NULL CHECK (reason IN ('initial', 'order', 'cancel', 'refund')),
    created_at   INTEGER NOT NULL,
    gate_applied INTEGER NOT NULL DEFAULT 1
);
INSERT INTO stock_ledger_new (id, sale_id, order_id, delta, reason, created_at, gate_applied)
    SELECT id, sale_id, order_id, delta, reason, created_at, gate_applied FROM stock_ledger;
DROP TABLE stock_ledger;
ALTER TABLE stock_ledger_new RENAME TO stock_ledger;
CREATE INDEX stock_ledger_sale ON stock_ledger (sale_id);
CREATE INDEX stock_ledger_unapplied ON stock_ledger (gate_applied, id);

-- RefundOrder moves the order's applied payment to refund_due.
CREATE INDEX payments_order ON payments (order_id);

-- +goose Down
DROP INDEX payments_order;

-- Refund rows cannot go back under the old CHECK: the copy fails on them.
CREATE TABLE stock_ledger_old (
    id           INTEGER PRIMARY KEY,
    sale_id      INTEGER NOT NULL REFERENCES sales (id),
    order_id     INTEGER REFERENCES orders (id),
    delta        INTEGER NOT NULL,
    reason       TEXT    NOT NULL CHECK (reason IN ('initial', 'order', 'cancel')),
    created_at   INTEGER NOT NULL,
    gate_applied INTEGER NOT NULL DEFAULT 1
);
INSERT INTO stock_ledger_old (id, sale_id, order_id, delta, reason, created_at, gate_applied)
    SELECT id, sale_id, order_id, delta, reason, created_at, gate_applied FROM stock_ledger;
DROP TABLE stock_ledger;
ALTER TABLE stock_ledger_old RENAME TO stock_ledger;
CREATE INDEX stock_ledger_sale ON stock_ledger (sale_id);
CREATE INDEX stock_ledger_unapplied ON stock_ledger (gate_applied, id);

ALTER TABLE orders DROP COLUMN refunded_at;
