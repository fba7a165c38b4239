-- An index on the sessions' expiry, for DeleteExpiredSessions: without it
-- each of its batches would scan the whole table. Expired sessions used
-- never to be deleted.

-- +goose Up
CREATE INDEX sessions_expires ON sessions (expires_at);

-- +goose Down
DROP INDEX sessions_expires;
