-- reconciler schema, version 6: what the Zoho (T2Mobile licence) submit job relies on.
-- Applied by `reconciler db migrate`, or by hand; the last statement records the version.

-- When a sales order was first requested for the order (written, fenced on the lease, right before the
-- create is sent): from then on every attempt searches Zoho by reference_number before it may create one.
ALTER TABLE zoho_orders ADD COLUMN submitted_at TIMESTAMPTZ;
-- When the order was completed (sales order open, licence provisioned).
ALTER TABLE zoho_orders ADD COLUMN completed_at TIMESTAMPTZ;

-- A Zoho sales order belongs to at most one of our orders.
CREATE UNIQUE INDEX zoho_orders_salesorder_idx ON zoho_orders (zoho_salesorder_id)
    WHERE zoho_salesorder_id IS NOT NULL;
-- In-doubt orders, oldest first: queued again (to search and adopt) once their grace is over.
CREATE INDEX zoho_orders_in_doubt_idx ON zoho_orders (updated_at) WHERE status = 'in_doubt';

INSERT INTO schema_migrations (version, name) VALUES (6, 'zoho_flow');
