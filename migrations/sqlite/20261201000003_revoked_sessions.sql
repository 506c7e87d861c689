-- Console sessions ended by a logout. A session cookie is a signed expiry that the process can
-- check without state, so a copy of it would stay valid until it expires; the sessions listed
-- here are refused as well. Only a SHA-256 of the cookie is kept, never the cookie. A row past
-- expires_at refuses nothing (the cookie has expired too) and is deleted by a later logout.
-- Times are INTEGER microseconds since the Unix epoch (UTC), as in the first migration.
CREATE TABLE revoked_sessions (
    session_sha256 TEXT    PRIMARY KEY CHECK (length(session_sha256) = 64
                                              AND session_sha256 NOT GLOB '*[^0-9a-f]*'),
    expires_at     INTEGER NOT NULL
);
CREATE INDEX revoked_sessions_expires_at_idx ON revoked_sessions (expires_at);
