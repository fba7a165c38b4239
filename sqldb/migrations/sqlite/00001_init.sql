-- Initial schema. Times are unix milliseconds (UTC) in INTEGER columns: exact,
-- compact and compared as integers.

-- +goose Up
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    phone         TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    nickname      TEXT    NOT NULL DEFAULT '',
    role          TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);

-- Only the SHA-256 of a token is stored; the primary key is the lookup.
CREATE TABLE sessions (
    token_hash BLOB    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    role       TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX sessions_user ON sessions (user_id);

-- Kept apart from any product table: the hot path reads only this.
CREATE TABLE sales (
    id                   INTEGER PRIMARY KEY,
    name                 TEXT    NOT NULL,
    description          TEXT    NOT NULL DEFAULT '',
    image_url            TEXT    NOT NULL DEFAULT '',
    price_cents          INTEGER NOT NULL,
    original_price_cents INTEGER NOT NULL,
    stock                INTEGER NOT NULL CHECK (stock >= 0),
    stock_left           INTEGER NOT NULL CHECK (stock_left >= 0),  -- I1: never below zero
    starts_at            INTEGER NOT NULL,
    ends_at              INTEGER NOT NULL,
    require_captcha      INTEGER NOT NULL DEFAULT 0,
    created_at           INTEGER NOT NULL
);

CREATE INDEX sales_start ON sales (starts_at, id);

CREATE TABLE orders (
    id           INTEGER PRIMARY KEY,
    order_no     TEXT    NOT NULL UNIQUE,
    sale_id      INTEGER NOT NULL REFERENCES sales (id),
    user_id      INTEGER NOT NULL REFERENCES users (id),
    price_cents  INTEGER NOT NULL,
    status       TEXT    NOT NULL CHECK (status IN ('pending_payment', 'paid', 'cancelled', 'refunded')),
    created_at   INTEGER NOT NULL,
    pay_deadline INTEGER NOT NULL,
    paid_at      INTEGER,
    cancelled_at INTEGER,
    UNIQUE (sale_id, user_id)  -- I2: one order per (sale, user), whatever its status
);

CREATE INDEX orders_user ON orders (user_id, id);

-- Every change of a sale's stock_left, so SUM(delta) = stock_left can be audited.
CREATE TABLE stock_ledger (
    id         INTEGER PRIMARY KEY,
    sale_id    INTEGER NOT NULL REFERENCES sales (id),
    order_id   INTEGER REFERENCES orders (id),
    delta      INTEGER NOT NULL,
    reason     TEXT    NOT NULL CHECK (reason IN ('initial', 'order', 'cancel')),
    created_at INTEGER NOT NULL
);

CREATE INDEX stock_ledger_sale ON stock_ledger (sale_id);

-- +goose Down
DROP TABLE stock_ledger;
DROP TABLE orders;
DROP TABLE sales;
DROP TABLE sessions;
DROP TABLE users;
