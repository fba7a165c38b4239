-- Order lifecycle: payments, the sweeper's index, and the outbox of units
-- that cancelled orders give back to the stock gate. No CHECK changes:
-- SQLite cannot alter one, and 'cancel' was allowed from the start.

-- +goose Up

-- One row per payment the provider reported (unique trade_no: a replayed
-- notification finds its row and changes nothing). sale_id is copied from
-- the order for the admin stats.
CREATE TABLE payments (
    id           INTEGER PRIMARY KEY,
    order_id     INTEGER NOT NULL REFERENCES orders (id),
    sale_id      INTEGER NOT NULL REFERENCES sales (id),
    order_no     TEXT    NOT NULL,
    trade_no     TEXT    NOT NULL UNIQUE,
    amount_cents INTEGER NOT NULL,
    trade_status TEXT    NOT NULL,
    notify_id    TEXT    NOT NULL DEFAULT '',
    app_id       TEXT    NOT NULL DEFAULT '',
    outcome      TEXT    NOT NULL CHECK (outcome IN ('applied', 'refund_due', 'refunded')),
    paid_at      INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    refunded_at  INTEGER
);

CREATE INDEX payments_outcome ON payments (outcome, id);
CREATE INDEX payments_sale ON payments (sale_id, outcome);

-- The sweeper reads pending orders by deadline: no full scan.
CREATE INDEX orders_status_deadline ON orders (status, pay_deadline, id);

-- Rows written before this migration are applied (the gate was built from
-- SQL); CancelOrder writes its 'cancel' rows 0 until the relay applies
-- them to the gate.
ALTER TABLE stock_ledger ADD COLUMN gate_applied INTEGER NOT NULL DEFAULT 1;
CREATE INDEX stock_ledger_unapplied ON stock_ledger (gate_applied, id);

-- +goose Down
DROP INDEX stock_ledger_unapplied;
ALTER TABLE stock_ledger DROP COLUMN gate_applied;
DROP INDEX orders_status_deadline;
DROP TABLE payments;
