-- Refunds of paid orders (paid → refunded): the order's refunded_at, a
-- 'refund' reason in the stock ledger (its unit goes back on sale through
-- the same outbox as a cancel's), and an index to find the payment that
-- paid an order.
--
-- The CHECK of 00001 is the column's on MariaDB, which goes with a MODIFY
-- of the column, and a table constraint named by the server on MySQL
-- (stock_ledger_chk_1), which a MODIFY keeps: any CHECK left is looked up
-- and dropped by a prepared statement ('DO 0' when none is left), then
-- the new one is added under a name of ours. The session variable lives
-- on goose's connection: the migration runs in one transaction.

-- +goose Up
ALTER TABLE orders ADD COLUMN refunded_at DATETIME(3) NULL;

ALTER TABLE stock_ledger MODIFY reason VARCHAR(16) NOT NULL;
SET @drop_check = COALESCE((
    SELECT CONCAT('ALTER TABLE stock_ledger DROP CONSTRAINT `', CONSTRAINT_NAME, '`')
    FROM information_schema.TABLE_CONSTRAINTS
    WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = 'stock_ledger' AND CONSTRAINT_TYPE = 'CHECK'
    LIMIT 1), 'DO 0');
PREPARE drop_check FROM @drop_check;
EXECUTE drop_check;
DEALLOCATE PREPARE drop_check;
ALTER TABLE stock_ledger
    ADD CONSTRAINT stock_ledger_reason CHECK (reason IN ('initial', 'order', 'cancel', 'refund'));

-- RefundOrder moves the order's applied payment to refund_due.
CREATE INDEX payments_order ON payments (order_id);

-- +goose Down
DROP INDEX payments_order ON payments;
-- Fails while refund rows exist: they cannot go back under the old CHECK.
ALTER TABLE stock_ledger DROP CONSTRAINT stock_ledger_reason;
ALTER TABLE stock_ledger
    ADD CONSTRAINT stock_ledger_reason CHECK (reason IN ('initial', 'order', 'cancel'));
ALTER TABLE orders DROP COLUMN refunded_at;
