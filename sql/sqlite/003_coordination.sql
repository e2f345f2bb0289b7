-- reconciler schema, version 3: state shared by replicas (reconciler/coordination/).
-- Applied by `reconciler db migrate`, or by hand; the last statement records the version.

-- Pause and probe per key: a provider's flow ('mtn') or a webhook endpoint ('webhook:<url>').
-- Paused while paused_until is in the future; when it has passed, one replica at a time takes the
-- probe (probe_by until probe_until) and either resumes the key or pauses it again.
CREATE TABLE pauses (
    key                   TEXT NOT NULL PRIMARY KEY,
    reason                TEXT,
    detail                TEXT,
    paused_until          DATETIME,
    consecutive_failures  INTEGER NOT NULL DEFAULT 0,
    probe_by              TEXT,
    probe_until           DATETIME,
    updated_at            DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
INSERT INTO pauses (key, reason, paused_until, updated_at)
    SELECT provider, paused_reason, paused_until, updated_at FROM provider_state WHERE paused;
INSERT INTO pauses (key, consecutive_failures, paused_until, updated_at)
    SELECT 'webhook:' || url, consecutive_failures, paused_until, updated_at FROM webhook_endpoints
    WHERE consecutive_failures > 0 OR paused_until IS NOT NULL;
ALTER TABLE provider_state DROP COLUMN paused;
ALTER TABLE provider_state DROP COLUMN paused_reason;
ALTER TABLE provider_state DROP COLUMN paused_until;
ALTER TABLE webhook_endpoints DROP COLUMN consecutive_failures;
ALTER TABLE webhook_endpoints DROP COLUMN paused_until;

-- A rate limit per key shared by replicas: the times (Unix seconds) of the grants still inside the
-- window, as a JSON array, rewritten under the row's lock on each grant.
CREATE TABLE rate_limits (
    key         TEXT NOT NULL PRIMARY KEY,
    grants      TEXT NOT NULL DEFAULT '[]',
    updated_at  DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- OAuth token slot (provider_state.access_token, token_expires_at): one replica refreshes at a time,
-- holding the refresh for itself until token_refresh_until.
ALTER TABLE provider_state ADD COLUMN token_refresh_by TEXT;
ALTER TABLE provider_state ADD COLUMN token_refresh_until DATETIME;

-- Time-of-day jobs: one row per job and slot, so a slot runs once across replicas and restarts. The
-- replica that inserted it holds it until lease_until; finished_at says the run succeeded.
CREATE TABLE schedule_runs (
    job          TEXT NOT NULL,
    slot_at      DATETIME NOT NULL,
    claimed_by   TEXT NOT NULL,
    lease_until  DATETIME NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 1,
    finished_at  DATETIME,
    last_error   TEXT,
    created_at   DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (job, slot_at)
);

INSERT INTO schema_migrations (version, name) VALUES (3, 'coordination');
