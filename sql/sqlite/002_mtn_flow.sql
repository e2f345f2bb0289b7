-- reconciler schema, version 2: what the MTN submit and reconcile jobs rely on.
-- Applied by `reconciler db migrate`, or by hand; the last statement records the version.

-- "0241234567:5" while an order may be at the reseller (in flight, in doubt, submitted), NULL
-- otherwise. Unique, so at most one order per recipient and size is ever unsettled: an in-doubt
-- order can then be matched to the reseller's history without ambiguity.
ALTER TABLE mtn_orders ADD COLUMN recipient_lock TEXT;
CREATE UNIQUE INDEX mtn_orders_recipient_lock_idx ON mtn_orders (recipient_lock)
    WHERE recipient_lock IS NOT NULL;

-- A reseller order belongs to at most one of our orders.
CREATE UNIQUE INDEX mtn_orders_provider_order_idx ON mtn_orders (provider_order_id)
    WHERE provider_order_id IS NOT NULL;

-- What reconciliation reads every cycle: unsettled orders, and completed orders watched for reversal.
DROP INDEX mtn_orders_unsettled_idx;
CREATE INDEX mtn_orders_unsettled_idx ON mtn_orders (submitted_at)
    WHERE status IN ('in_doubt', 'submitted');
CREATE INDEX mtn_orders_watch_idx ON mtn_orders (completed_at) WHERE status = 'completed';

INSERT INTO schema_migrations (version, name) VALUES (2, 'mtn_flow');
