-- reconciler schema, version 4: the database refuses shop input no order could be fulfilled from.
-- Applied by `reconciler db migrate`, or by hand; the last statement records the version.

-- An empty (or blank) shop_order_id names no order: refuse it at the INSERT, where the shop sees it.
-- Rows stored before this check existed keep a findable id instead of being refused later.
-- SQLite cannot add a CHECK to an existing table without rebuilding it (copying every row of a table that
-- may hold millions, under the one write lock); two triggers refuse the same rows at no cost.
-- Each trigger stays on one line: `db migrate` splits statements at a ';' that ends a line.
UPDATE mtn_orders SET shop_order_id = 'empty-' || id WHERE trim(shop_order_id) = '';
CREATE TRIGGER mtn_orders_shop_order_id_insert BEFORE INSERT ON mtn_orders WHEN trim(NEW.shop_order_id) = '' BEGIN SELECT RAISE(ABORT, 'mtn_orders.shop_order_id must not be empty'); END;
CREATE TRIGGER mtn_orders_shop_order_id_update BEFORE UPDATE OF shop_order_id ON mtn_orders WHEN trim(NEW.shop_order_id) = '' BEGIN SELECT RAISE(ABORT, 'mtn_orders.shop_order_id must not be empty'); END;

INSERT INTO schema_migrations (version, name) VALUES (4, 'input_checks');
