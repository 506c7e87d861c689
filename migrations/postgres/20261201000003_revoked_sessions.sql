-- Console sessions ended by a logout. A session cookie is a signed expiry that any replica can
-- check without state, so a copy of it would stay valid until it expires; every replica also
-- refuses the sessions listed here. Only a SHA-256 of the cookie is kept, never the cookie.
-- A row past expires_at refuses nothing (the cookie has expired too) and is deleted by a
-- later logout.
CREATE TABLE revoked_sessions (
    session_sha256 TEXT        PRIMARY KEY CHECK (session_sha256 ~ '^[0-9a-f]{64}$'),
    expires_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX revoked_sessions_expires_at_idx ON revoked_sessions (expires_at);
