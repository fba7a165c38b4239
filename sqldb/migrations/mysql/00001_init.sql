-- Initial schema for MySQL 8.0.16+ and MariaDB 10.5+ (CHECK constraints are
-- enforced from those versions). Times are DATETIME(3) holding UTC: the store
-- writes and reads them in UTC whatever the session time zone. Identifiers
-- that are compared byte for byte (phone, order number) use a binary
-- collation, so "ab" and "AB" are two tickets.
--
-- orders and stock_ledger have no foreign keys: they are the order writer's
-- hot path, and checking one costs about as much as the insert. WriteOrders
-- finds and locks each sale before inserting its orders and ledger rows,
-- in the same transaction; that a user exists is checked at admission.

-- +goose Up
CREATE TABLE users (
    id            BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    phone         VARCHAR(32)  CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    nickname      VARCHAR(255) NOT NULL DEFAULT '',
    role          VARCHAR(16)  NOT NULL,
    created_at    DATETIME(3)  NOT NULL,
    UNIQUE KEY users_phone (phone)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Only the SHA-256 of a token is stored; the primary key is the lookup.
CREATE TABLE sessions (
    token_hash VARBINARY(32) NOT NULL PRIMARY KEY,
    user_id    BIGINT        NOT NULL,
    role       VARCHAR(16)   NOT NULL,
    expires_at DATETIME(3)   NOT NULL,
    created_at DATETIME(3)   NOT NULL,
    KEY sessions_user (user_id),
    CONSTRAINT sessions_user_fk FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Kept apart from any product table: the hot path reads only this.
CREATE TABLE sales (
    id                   BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name                 VARCHAR(255)  NOT NULL,
    description          TEXT          NOT NULL,
    image_url            VARCHAR(1024) NOT NULL DEFAULT '',
    price_cents          BIGINT        NOT NULL,
    original_price_cents BIGINT        NOT NULL,
    stock                BIGINT        NOT NULL CHECK (stock >= 0),
    stock_left           BIGINT        NOT NULL CHECK (stock_left >= 0),  -- I1: never below zero
    starts_at            DATETIME(3)   NOT NULL,
    ends_at              DATETIME(3)   NOT NULL,
    require_captcha      BOOLEAN       NOT NULL DEFAULT FALSE,
    created_at           DATETIME(3)   NOT NULL,
    KEY sales_start (starts_at, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE orders (
    id           BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    order_no     VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    sale_id      BIGINT      NOT NULL,
    user_id      BIGINT      NOT NULL,
    price_cents  BIGINT      NOT NULL,
    status       VARCHAR(16) NOT NULL CHECK (status IN ('pending_payment', 'paid', 'cancelled', 'refunded')),
    created_at   DATETIME(3) NOT NULL,
    pay_deadline DATETIME(3) NOT NULL,
    paid_at      DATETIME(3) NULL,
    cancelled_at DATETIME(3) NULL,
    UNIQUE KEY orders_order_no (order_no),
    UNIQUE KEY orders_sale_user (sale_id, user_id),  -- I2: one order per (sale, user), whatever its status
    KEY orders_user (user_id, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Every change of a sale's stock_left, so SUM(delta) = stock_left can be audited.
CREATE TABLE stock_ledger (
    id         BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    sale_id    BIGINT      NOT NULL,
    order_id   BIGINT      NULL,
    delta      BIGINT      NOT NULL,
    reason     VARCHAR(16) NOT NULL CHECK (reason IN ('initial', 'order', 'cancel')),
    created_at DATETIME(3) NOT NULL,
    KEY stock_ledger_sale (sale_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- +goose Down
DROP TABLE stock_ledger;
DROP TABLE orders;
DROP TABLE sales;
DROP TABLE sessions;
DROP TABLE users;
