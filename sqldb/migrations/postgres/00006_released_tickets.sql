-- The reconciler's releases, kept where a gate rebuild reads: a request
-- whose reservation was released may still land in the queue late (its
-- publish stalled), and must never become an order, since its unit was
-- sold again. The gate refuses it while it remembers the release; a gate
-- rebuilt from SQL and the queue (a Redis that lost the sale, a restart
-- of the embedded server) learns the release here.

-- +goose Up
CREATE TABLE released_tickets (
    ticket      TEXT        NOT NULL PRIMARY KEY,
    sale_id     BIGINT      NOT NULL,
    user_id     BIGINT      NOT NULL,
    released_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX released_tickets_sale ON released_tickets (sale_id);

-- +goose Down
DROP TABLE released_tickets;
