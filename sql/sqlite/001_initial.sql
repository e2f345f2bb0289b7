-- reconciler schema, version 1 (SQLite).
-- Applied by `reconciler db migrate`; a DBA may also apply this file by hand: its last
-- statement records the version, so a later `db migrate` knows it is done.
-- Shop systems write only their own columns of the outbox tables (marked "shop");
-- every daemon column has a default, so an INSERT never needs to name one.

CREATE TABLE IF NOT EXISTS schema_migrations (
    version     INTEGER NOT NULL PRIMARY KEY,
    name        TEXT NOT NULL,
    applied_at  DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- MTN data bundles: one row per order a shop wants delivered.
CREATE TABLE mtn_orders (
    id               INTEGER NOT NULL PRIMARY KEY,
    shop_order_id    TEXT NOT NULL UNIQUE,   -- shop
    recipient_phone  TEXT,                   -- shop: any common Ghanaian form
    network          TEXT DEFAULT 'MTN',     -- shop
    size_gb          INTEGER,                -- shop: > 0 (checked by the daemon, rejected otherwise)
    notify_url       TEXT,                   -- shop, optional: where the customer event goes
    -- daemon: claiming, leases and retries
    status           TEXT NOT NULL DEFAULT 'queued',
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    locked_by        TEXT,
    locked_until     DATETIME,
    last_error       TEXT,
    created_at       DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at       DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    -- daemon: what the provider said
    normalized_phone  TEXT,                  -- 0XXXXXXXXX, what the reseller was sent
    provider_order_id TEXT,
    provider_status   TEXT,
    reject_reason     TEXT,
    submitted_at      DATETIME,
    completed_at      DATETIME,
    CONSTRAINT mtn_orders_status_check CHECK (status IN ('queued', 'in_flight', 'in_doubt', 'submitted', 'completed', 'failed', 'rejected', 'dead'))
);
-- The claim reads exactly this index: its cost is O(batch) however many rows are finished.
CREATE INDEX mtn_orders_claim_idx ON mtn_orders (next_attempt_at, id) WHERE status = 'queued';
-- The rescuer finds expired leases here.
CREATE INDEX mtn_orders_lease_idx ON mtn_orders (locked_until) WHERE status = 'in_flight';
-- Unsettled orders by recipient and size: what history matching and the one-in-flight rule look up.
CREATE INDEX mtn_orders_unsettled_idx ON mtn_orders (normalized_phone, size_gb)
    WHERE status IN ('in_flight', 'in_doubt', 'submitted');

-- T2Mobile software licences fulfilled through Zoho Books sales orders.
CREATE TABLE zoho_orders (
    id               INTEGER NOT NULL PRIMARY KEY,
    order_id         TEXT NOT NULL UNIQUE,   -- shop/partner: the T2Mobile order id
    idempotency_key  TEXT UNIQUE,            -- shop/partner
    customer_id      TEXT,                   -- shop/partner
    customer_name    TEXT,                   -- shop/partner
    customer_email   TEXT,                   -- shop/partner
    customer_phone   TEXT,                   -- shop/partner
    product_id       TEXT,                   -- shop/partner
    tenure           TEXT,                   -- shop/partner: 1_MONTH, 3_MONTHS, 6_MONTHS, 12_MONTHS, 24_MONTHS
    -- daemon: claiming, leases and retries
    status           TEXT NOT NULL DEFAULT 'queued',
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    locked_by        TEXT,
    locked_until     DATETIME,
    last_error       TEXT,
    created_at       DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at       DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    -- daemon: what Zoho said
    zoho_salesorder_id   TEXT,
    activation_reference TEXT,
    expiry_date          DATETIME,
    reject_reason        TEXT,
    CONSTRAINT zoho_orders_status_check CHECK (status IN ('queued', 'in_flight', 'in_doubt', 'submitted', 'completed', 'failed', 'rejected', 'dead'))
);
-- The claim reads exactly this index: its cost is O(batch) however many rows are finished.
CREATE INDEX zoho_orders_claim_idx ON zoho_orders (next_attempt_at, id) WHERE status = 'queued';
-- The rescuer finds expired leases here.
CREATE INDEX zoho_orders_lease_idx ON zoho_orders (locked_until) WHERE status = 'in_flight';

-- Outgoing signed webhooks: an outbox of events and their delivery state.
CREATE TABLE webhook_deliveries (
    id            INTEGER NOT NULL PRIMARY KEY,
    event_id      TEXT NOT NULL UNIQUE,      -- msg_...: the webhook-id, stable across retries
    event_type    TEXT NOT NULL,
    audience      TEXT NOT NULL,             -- partner or notify: which secret signs it
    order_table   TEXT NOT NULL,
    order_ref     TEXT NOT NULL,
    sequence      INTEGER NOT NULL,          -- per order, so receivers can order and dedupe
    endpoint_url  TEXT NOT NULL,
    payload       TEXT NOT NULL,             -- the exact bytes that are signed and sent
    occurred_at   DATETIME NOT NULL,
    -- daemon: claiming, leases and retries
    status           TEXT NOT NULL DEFAULT 'queued',
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    locked_by        TEXT,
    locked_until     DATETIME,
    last_error       TEXT,
    created_at       DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at       DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_status_code INTEGER,
    delivered_at     DATETIME,
    CONSTRAINT webhook_deliveries_status_check CHECK (status IN ('queued', 'in_flight', 'delivered', 'dead'))
);
-- The claim reads exactly this index: its cost is O(batch) however many rows are finished.
CREATE INDEX webhook_deliveries_claim_idx ON webhook_deliveries (next_attempt_at, id) WHERE status = 'queued';
-- The rescuer finds expired leases here.
CREATE INDEX webhook_deliveries_lease_idx ON webhook_deliveries (locked_until) WHERE status = 'in_flight';
CREATE UNIQUE INDEX webhook_deliveries_order_idx ON webhook_deliveries (order_table, order_ref, sequence);

-- Every delivery attempt of an outgoing webhook: what the endpoint answered and how fast.
CREATE TABLE webhook_attempts (
    id               INTEGER NOT NULL PRIMARY KEY,
    delivery_id      INTEGER NOT NULL REFERENCES webhook_deliveries (id),
    event_id         TEXT NOT NULL,
    attempt          INTEGER NOT NULL,
    endpoint_url     TEXT NOT NULL,
    status_code      INTEGER,
    latency_ms       INTEGER NOT NULL,
    error_class      TEXT,                   -- timeout, connection, http_5xx, http_4xx, redirect, ...
    response_excerpt TEXT,
    worker_id        TEXT NOT NULL,
    attempted_at     DATETIME NOT NULL
);
CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (delivery_id);

-- Per-endpoint delivery state shared by all replicas: circuit breaker and 410-disabled endpoints.
CREATE TABLE webhook_endpoints (
    url                   TEXT NOT NULL PRIMARY KEY,
    consecutive_failures  INTEGER NOT NULL DEFAULT 0,
    paused_until          DATETIME,
    disabled_at           DATETIME,
    disabled_reason       TEXT,
    updated_at            DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- Audit of every provider request and response, secrets redacted.
CREATE TABLE api_calls (
    id             INTEGER NOT NULL PRIMARY KEY,
    provider       TEXT NOT NULL,
    method         TEXT NOT NULL,
    url            TEXT NOT NULL,
    request_body   TEXT,
    status_code    INTEGER,
    response_body  TEXT,
    error          TEXT,
    duration_ms    INTEGER,
    order_table    TEXT,
    order_id       INTEGER,
    created_at     DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX api_calls_order_idx ON api_calls (order_table, order_id);

-- Provider webhooks as received: stored before we answer 2xx, deduplicated, then applied.
CREATE TABLE inbound_webhooks (
    id                INTEGER NOT NULL PRIMARY KEY,
    provider          TEXT NOT NULL,
    dedupe_key        TEXT NOT NULL,
    raw_body          TEXT NOT NULL,
    signature_valid   BOOLEAN NOT NULL,
    provider_order_id TEXT,
    received_at       DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    processed_at      DATETIME,
    process_error     TEXT
);
CREATE UNIQUE INDEX inbound_webhooks_dedupe_idx ON inbound_webhooks (provider, dedupe_key);
CREATE INDEX inbound_webhooks_unprocessed_idx ON inbound_webhooks (received_at) WHERE processed_at IS NULL;

-- Licences provisioned for T2Mobile customers, and when they expire.
CREATE TABLE subscriptions (
    id                    INTEGER NOT NULL PRIMARY KEY,
    zoho_order_id         INTEGER NOT NULL REFERENCES zoho_orders (id),
    customer_id           TEXT NOT NULL,
    product_id            TEXT NOT NULL,
    tenure                TEXT NOT NULL,
    activation_reference  TEXT NOT NULL,
    starts_at             DATETIME NOT NULL,
    expires_at            DATETIME NOT NULL,
    status                TEXT NOT NULL DEFAULT 'active',
    reminder_sent_at      DATETIME,
    created_at            DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at            DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX subscriptions_expiry_idx ON subscriptions (expires_at);

-- Every status transition of every outbox row, with its cause and the worker that made it.
CREATE TABLE status_history (
    id           INTEGER NOT NULL PRIMARY KEY,
    table_name   TEXT NOT NULL,
    row_id       INTEGER NOT NULL,
    from_status  TEXT,
    to_status    TEXT NOT NULL,
    cause        TEXT NOT NULL,
    worker_id    TEXT,
    created_at   DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX status_history_row_idx ON status_history (table_name, row_id);

-- Per-provider state shared by all replicas: paused, balance, cached OAuth token.
CREATE TABLE provider_state (
    provider            TEXT NOT NULL PRIMARY KEY,
    paused              BOOLEAN NOT NULL DEFAULT 0,
    paused_reason       TEXT,
    paused_until        DATETIME,
    balance             NUMERIC(18, 4),
    balance_checked_at  DATETIME,
    access_token        TEXT,
    token_expires_at    DATETIME,
    updated_at          DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);

INSERT INTO schema_migrations (version, name) VALUES (1, 'initial');
