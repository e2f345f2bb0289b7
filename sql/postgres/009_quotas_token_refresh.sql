-- reconciler schema, version 9: daily quotas shared by replicas (reconciler/coordination/quotas.py), and when
-- the shared OAuth token is due for its refresh (reconciler/coordination/tokens.py).
-- Applied by `reconciler db migrate`, or by hand; the last statement records the version.

-- Uses of a key counted per day (e.g. 'zoho:<organization_id>', Zoho's API calls per day): the day counted
-- (YYYY-MM-DD, UTC) and how many uses it has had; a use on a new day starts the count again.
CREATE TABLE quotas (
    key         TEXT NOT NULL PRIMARY KEY,
    day         TEXT NOT NULL DEFAULT '',
    used        INTEGER NOT NULL DEFAULT 0,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- When the token in provider_state is refreshed: set with the token, from its lifetime (never before half of it,
-- so a token shorter than the refresh-ahead time is not refreshed on every use); NULL: due now.
ALTER TABLE provider_state ADD COLUMN token_refresh_at TIMESTAMPTZ;

INSERT INTO schema_migrations (version, name) VALUES (9, 'quotas_token_refresh');
