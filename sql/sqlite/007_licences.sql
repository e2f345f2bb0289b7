-- reconciler schema, version 7: the licence lifecycle of the T2Mobile flow (renewals, expiry reminders).
-- Applied by `reconciler db migrate`, or by hand; the last statement records the version.

-- Which licence an order provisioned, and whether it did so by extending one the customer already had
-- (written by the fulfilment, in its transaction). No foreign key: subscriptions already refers to zoho_orders.
ALTER TABLE zoho_orders ADD COLUMN subscription_id INTEGER;
ALTER TABLE zoho_orders ADD COLUMN renewal BOOLEAN NOT NULL DEFAULT 0;
-- The 03:00 check looks for completed renewals without their extension: few rows, so a small index.
CREATE INDEX zoho_orders_renewal_idx ON zoho_orders (id) WHERE renewal;

-- One licence per order that started one; one active licence per customer and product (a second order for
-- them is a renewal); activation references are ours and never repeat.
CREATE UNIQUE INDEX subscriptions_order_idx ON subscriptions (zoho_order_id);
CREATE UNIQUE INDEX subscriptions_active_idx ON subscriptions (customer_id, product_id) WHERE status = 'active';
CREATE UNIQUE INDEX subscriptions_activation_reference_idx ON subscriptions (activation_reference);

-- Each renewal's extension, at most one per order: the licence's expiry before and after it, and what applied
-- it (fulfilment, or repair by the 03:00 check).
CREATE TABLE licence_extensions (
    id               INTEGER NOT NULL PRIMARY KEY,
    subscription_id  INTEGER NOT NULL REFERENCES subscriptions (id),
    zoho_order_id    INTEGER NOT NULL UNIQUE REFERENCES zoho_orders (id),
    months           INTEGER NOT NULL,
    previous_expiry  DATETIME    NOT NULL,
    new_expiry       DATETIME    NOT NULL,
    cause            TEXT NOT NULL,
    extended_at      DATETIME    NOT NULL
);
CREATE INDEX licence_extensions_subscription_idx ON licence_extensions (subscription_id);

-- One EXPIRY_REMINDER per licence and expiry date, written in the transaction of its event: a retried or
-- repeated reminder run finds the row and sends nothing twice.
CREATE TABLE licence_reminders (
    subscription_id  INTEGER NOT NULL REFERENCES subscriptions (id),
    expires_at       DATETIME    NOT NULL,
    zoho_order_id    INTEGER NOT NULL REFERENCES zoho_orders (id),
    event_id         TEXT,
    slot_at          DATETIME    NOT NULL,
    sent_at          DATETIME    NOT NULL,
    PRIMARY KEY (subscription_id, expires_at)
);

INSERT INTO schema_migrations (version, name) VALUES (7, 'licences');
