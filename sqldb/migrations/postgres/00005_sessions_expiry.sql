-- An index on the sessions' expiry, for DeleteExpiredSessions: without it
-- each of its batches would scan the whole table. Expired sessions used
-- never to be deleted, so the table may be big when this runs: the index
-- is built CONCURRENTLY (outside a transaction), so logins of instances
-- still running the version before go on writing sessions meanwhile. A
-- build that failed half-way leaves an invalid index behind, which the
-- next start drops and builds again.

-- +goose NO TRANSACTION
-- +goose Up
DROP INDEX CONCURRENTLY IF EXISTS sessions_expires;
CREATE INDEX CONCURRENTLY sessions_expires ON sessions (expires_at);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS sessions_expires;
