-- reconciler schema, version 8: the partner intake API's stored answers (Idempotency-Key).
-- Applied by `reconciler db migrate`, or by hand; the last statement records the version.

-- One row per Idempotency-Key per API key (client: the first 16 hex digits of the API key's SHA-256,
-- never the key). While a request is being handled it holds the row (claimed_by until locked_until; a
-- request that died frees it then); once answered, the answer is kept here until expires_at, so a retry of
-- the same request gets it again, a different request under the same key is refused (the fingerprint
-- differs), and a request that races the first one is told to wait (409).
CREATE TABLE idempotency_keys (
    client            TEXT NOT NULL,
    idempotency_key   TEXT NOT NULL,
    fingerprint       TEXT NOT NULL,
    claimed_by        TEXT,
    locked_until      TIMESTAMPTZ,
    order_id          TEXT,
    status_code       INTEGER,
    response_headers  TEXT,
    response_body     TEXT,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (client, idempotency_key)
);
-- what the pruning job deletes
CREATE INDEX idempotency_keys_expiry_idx ON idempotency_keys (expires_at);

INSERT INTO schema_migrations (version, name) VALUES (8, 'partner_intake');
