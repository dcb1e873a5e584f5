-- The monitor's login sessions (docs/MONITOR.md). A browser signs in with an API key
-- once; it then holds a random session secret in an HttpOnly cookie, of which only the
-- SHA-256 is kept here. A session acts as the key it was opened with: every request
-- checks the key (revoked, expired) and its user (disabled, role) again, so an account
-- change takes effect on the next page. Forward-only (docs/MIGRATIONS.md).
CREATE TABLE monitor_sessions (
    id             uuid PRIMARY KEY,
    secret_sha256  bytea NOT NULL UNIQUE CHECK (length(secret_sha256) = 32),
    key_id         uuid NOT NULL REFERENCES api_keys (id),
    -- Sent in every form of the session and compared on every POST (CSRF).
    csrf_token     text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    ended_at       timestamptz
);
CREATE INDEX monitor_sessions_key ON monitor_sessions (key_id);
