-- Order lifecycle: payments, the sweeper's index, and the outbox of units
-- that cancelled orders give back to the stock gate.

-- +goose Up

-- One row per payment the provider reported (unique trade_no: a replayed
-- notification finds its row and changes nothing). sale_id is copied from
-- the order for the admin stats.
CREATE TABLE payments (
    id           BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    order_id     BIGINT       NOT NULL,
    sale_id      BIGINT       NOT NULL,
    order_no     VARCHAR(64)  CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    trade_no     VARCHAR(64)  CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    amount_cents BIGINT       NOT NULL,
    trade_status VARCHAR(32)  NOT NULL,
    notify_id    VARCHAR(128) NOT NULL DEFAULT '',
    app_id       VARCHAR(64)  NOT NULL DEFAULT '',
    outcome      VARCHAR(16)  NOT NULL CHECK (outcome IN ('applied', 'refund_due', 'refunded')),
    paid_at      DATETIME(3)  NOT NULL,
    created_at   DATETIME(3)  NOT NULL,
    refunded_at  DATETIME(3)  NULL,
    UNIQUE KEY payments_trade_no (trade_no),
    KEY payments_outcome (outcome, id),
    KEY payments_sale (sale_id, outcome)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- The sweeper reads pending orders by deadline: no full scan.
CREATE INDEX orders_status_deadline ON orders (status, pay_deadline, id);

-- Rows written before this migration are applied (the gate was built from
-- SQL); CancelOrder writes its 'cancel' rows FALSE until the relay applies
-- them to the gate.
ALTER TABLE stock_ledger ADD COLUMN gate_applied BOOLEAN NOT NULL DEFAULT TRUE;
CREATE INDEX stock_ledger_unapplied ON stock_ledger (gate_applied, id);

-- +goose Down
DROP INDEX stock_ledger_unapplied ON stock_ledger;
ALTER TABLE stock_ledger DROP COLUMN gate_applied;
DROP INDEX orders_status_deadline ON orders;
DROP TABLE payments;
