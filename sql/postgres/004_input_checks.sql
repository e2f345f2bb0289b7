-- reconciler schema, version 4: the database refuses shop input no order could be fulfilled from.
-- Applied by `reconciler db migrate`, or by hand; the last statement records the version.

-- An empty (or blank) shop_order_id names no order: refuse it at the INSERT, where the shop sees it.
-- Rows stored before this check existed keep a findable id instead of blocking the migration.
UPDATE mtn_orders SET shop_order_id = 'empty-' || id WHERE btrim(shop_order_id) = '';
ALTER TABLE mtn_orders ADD CONSTRAINT mtn_orders_shop_order_id_check CHECK (btrim(shop_order_id) <> '');

INSERT INTO schema_migrations (version, name) VALUES (4, 'input_checks');
