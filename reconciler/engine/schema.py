"""The database schema as SQLAlchemy Core metadata: the one definition the code uses.

sql/postgres and sql/sqlite hold the same schema as plain SQL for DBAs and for `db migrate`;
tests/test_schema.py proves the two agree.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    DDL, BigInteger, Boolean, CheckConstraint, Column, DateTime, ForeignKey, Identity, Index, Integer, MetaData,
    Numeric, Table, Text, event, text,
)
from sqlalchemy.types import TypeDecorator

QUEUED, IN_FLIGHT, IN_DOUBT, SUBMITTED = "queued", "in_flight", "in_doubt", "submitted"
COMPLETED, FAILED, REJECTED, DEAD = "completed", "failed", "rejected", "dead"
ORDER_STATUSES = (QUEUED, IN_FLIGHT, IN_DOUBT, SUBMITTED, COMPLETED, FAILED, REJECTED, DEAD)
TERMINAL_STATUSES = (COMPLETED, FAILED, REJECTED, DEAD)
DELIVERED = "delivered"
DELIVERY_STATUSES = (QUEUED, IN_FLIGHT, DELIVERED, DEAD)


class UTCDateTime(TypeDecorator):
    """Timestamps are UTC everywhere: timestamptz on PostgreSQL, naive UTC text on SQLite, aware in Python."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


ID = BigInteger().with_variant(Integer, "sqlite")  # SQLite: INTEGER PRIMARY KEY is the rowid
NOW = text("CURRENT_TIMESTAMP")

metadata = MetaData()


def _status_check(table: str, statuses: tuple[str, ...]) -> CheckConstraint:
    allowed = ", ".join(f"'{s}'" for s in statuses)
    return CheckConstraint(f"status IN ({allowed})", name=f"{table}_status_check")


def _lease_columns() -> list[Column]:
    """Columns every outbox table carries for claiming, leasing and retrying."""
    return [
        Column("status", Text, nullable=False, server_default=text(f"'{QUEUED}'")),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        Column("next_attempt_at", UTCDateTime, nullable=False, server_default=NOW),
        Column("locked_by", Text),
        Column("locked_until", UTCDateTime),
        Column("last_error", Text),
        Column("created_at", UTCDateTime, nullable=False, server_default=NOW),
        Column("updated_at", UTCDateTime, nullable=False, server_default=NOW),
    ]


def _lease_indexes(table: str) -> list[Index]:
    """The claim index matches the claim query exactly, so a claim costs O(batch) however many rows are finished."""
    queued = text(f"status = '{QUEUED}'")
    in_flight = text(f"status = '{IN_FLIGHT}'")
    return [
        Index(f"{table}_claim_idx", "next_attempt_at", "id", postgresql_where=queued, sqlite_where=queued),
        Index(f"{table}_lease_idx", "locked_until", postgresql_where=in_flight, sqlite_where=in_flight),
    ]


def _partial_index(name: str, where: str, *columns: str, unique: bool = False) -> Index:
    return Index(name, *columns, unique=unique, postgresql_where=text(where), sqlite_where=text(where))


mtn_orders = Table(
    "mtn_orders", metadata,
    Column("id", ID, Identity(), primary_key=True),
    Column("shop_order_id", Text, nullable=False, unique=True),
    Column("recipient_phone", Text),
    Column("network", Text, server_default=text("'MTN'")),
    Column("size_gb", Integer),
    Column("notify_url", Text),
    *_lease_columns(),
    Column("normalized_phone", Text),
    Column("provider_order_id", Text),
    Column("provider_status", Text),
    Column("reject_reason", Text),
    Column("submitted_at", UTCDateTime),
    Column("completed_at", UTCDateTime),
    # "0241234567:5" while the order may be at the reseller, else NULL: one unsettled order per recipient
    # and size, so an in-doubt order matches the reseller's history without ambiguity.
    Column("recipient_lock", Text),
    _status_check("mtn_orders", ORDER_STATUSES),
    # SQLite refuses the same rows with triggers (below): it cannot add a CHECK to an existing table.
    CheckConstraint("btrim(shop_order_id) <> ''", name="mtn_orders_shop_order_id_check").ddl_if(dialect="postgresql"),
    *_lease_indexes("mtn_orders"),
    _partial_index("mtn_orders_recipient_lock_idx", "recipient_lock IS NOT NULL", "recipient_lock", unique=True),
    _partial_index("mtn_orders_provider_order_idx", "provider_order_id IS NOT NULL", "provider_order_id",
                   unique=True),
    _partial_index("mtn_orders_unsettled_idx", f"status IN ('{IN_DOUBT}', '{SUBMITTED}')", "submitted_at"),
    _partial_index("mtn_orders_watch_idx", f"status = '{COMPLETED}'", "completed_at"),
)

for _when in ("INSERT", "UPDATE OF shop_order_id"):
    event.listen(mtn_orders, "after_create", DDL(
        f"CREATE TRIGGER mtn_orders_shop_order_id_{_when.split()[0].lower()} BEFORE {_when} ON mtn_orders "
        "WHEN trim(NEW.shop_order_id) = '' BEGIN SELECT RAISE(ABORT, 'mtn_orders.shop_order_id must not be empty'); END"
    ).execute_if(dialect="sqlite"))

zoho_orders = Table(
    "zoho_orders", metadata,
    Column("id", ID, Identity(), primary_key=True),
    Column("order_id", Text, nullable=False, unique=True),
    Column("idempotency_key", Text, unique=True),
    Column("customer_id", Text),
    Column("customer_name", Text),
    Column("customer_email", Text),
    Column("customer_phone", Text),
    Column("product_id", Text),
    Column("tenure", Text),
    *_lease_columns(),
    Column("zoho_salesorder_id", Text),
    Column("activation_reference", Text),
    Column("expiry_date", UTCDateTime),
    Column("reject_reason", Text),
    # Set (fenced) right before a sales order is first requested: from then on, search before any create.
    Column("submitted_at", UTCDateTime),
    Column("completed_at", UTCDateTime),
    Column("subscription_id", BigInteger().with_variant(Integer, "sqlite")),  # no FK: subscriptions refers here
    Column("renewal", Boolean, nullable=False, server_default=text("false")),
    _status_check("zoho_orders", ORDER_STATUSES),
    *_lease_indexes("zoho_orders"),
    _partial_index("zoho_orders_salesorder_idx", "zoho_salesorder_id IS NOT NULL", "zoho_salesorder_id",
                   unique=True),
    _partial_index("zoho_orders_in_doubt_idx", f"status = '{IN_DOUBT}'", "updated_at"),
    _partial_index("zoho_orders_renewal_idx", "renewal", "id"),
)

webhook_deliveries = Table(
    "webhook_deliveries", metadata,
    Column("id", ID, Identity(), primary_key=True),
    Column("event_id", Text, nullable=False, unique=True),
    Column("event_type", Text, nullable=False),
    Column("audience", Text, nullable=False),
    Column("order_table", Text, nullable=False),
    Column("order_ref", Text, nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("endpoint_url", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    *_lease_columns(),
    Column("last_status_code", Integer),
    Column("delivered_at", UTCDateTime),
    _status_check("webhook_deliveries", DELIVERY_STATUSES),
    *_lease_indexes("webhook_deliveries"),
    Index("webhook_deliveries_order_idx", "order_table", "order_ref", "sequence", unique=True),
)

webhook_attempts = Table(
    "webhook_attempts", metadata,
    Column("id", ID, Identity(), primary_key=True),
    Column("delivery_id", BigInteger().with_variant(Integer, "sqlite"), ForeignKey("webhook_deliveries.id"),
           nullable=False),
    Column("event_id", Text, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("endpoint_url", Text, nullable=False),
    Column("status_code", Integer),
    Column("latency_ms", Integer, nullable=False),
    Column("error_class", Text),
    Column("response_excerpt", Text),
    Column("worker_id", Text, nullable=False),
    Column("attempted_at", UTCDateTime, nullable=False),
    Index("webhook_attempts_delivery_idx", "delivery_id"),
)

webhook_endpoints = Table(
    "webhook_endpoints", metadata,
    Column("url", Text, primary_key=True),
    Column("disabled_at", UTCDateTime),
    Column("disabled_reason", Text),
    Column("updated_at", UTCDateTime, nullable=False, server_default=NOW),
)

api_calls = Table(
    "api_calls", metadata,
    Column("id", ID, Identity(), primary_key=True),
    Column("provider", Text, nullable=False),
    Column("method", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("request_body", Text),
    Column("status_code", Integer),
    Column("response_body", Text),
    Column("error", Text),
    Column("duration_ms", Integer),
    Column("order_table", Text),
    Column("order_id", BigInteger().with_variant(Integer, "sqlite")),
    Column("created_at", UTCDateTime, nullable=False, server_default=NOW),
    Index("api_calls_order_idx", "order_table", "order_id"),
)

inbound_webhooks = Table(
    "inbound_webhooks", metadata,
    Column("id", ID, Identity(), primary_key=True),
    Column("provider", Text, nullable=False),
    Column("dedupe_key", Text, nullable=False),
    Column("raw_body", Text, nullable=False),
    Column("signature_valid", Boolean, nullable=False),
    Column("provider_order_id", Text),
    Column("received_at", UTCDateTime, nullable=False, server_default=NOW),
    Column("processed_at", UTCDateTime),
    Column("process_error", Text),
    Index("inbound_webhooks_dedupe_idx", "provider", "dedupe_key", unique=True),
    Index("inbound_webhooks_unprocessed_idx", "received_at",
          postgresql_where=text("processed_at IS NULL"), sqlite_where=text("processed_at IS NULL")),
)

subscriptions = Table(
    "subscriptions", metadata,
    Column("id", ID, Identity(), primary_key=True),
    Column("zoho_order_id", BigInteger().with_variant(Integer, "sqlite"), ForeignKey("zoho_orders.id"), nullable=False),
    Column("customer_id", Text, nullable=False),
    Column("product_id", Text, nullable=False),
    Column("tenure", Text, nullable=False),
    Column("activation_reference", Text, nullable=False),
    Column("starts_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("status", Text, nullable=False, server_default=text("'active'")),
    Column("reminder_sent_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False, server_default=NOW),
    Column("updated_at", UTCDateTime, nullable=False, server_default=NOW),
    Index("subscriptions_expiry_idx", "expires_at"),
    Index("subscriptions_order_idx", "zoho_order_id", unique=True),
    _partial_index("subscriptions_active_idx", "status = 'active'", "customer_id", "product_id", unique=True),
    Index("subscriptions_activation_reference_idx", "activation_reference", unique=True),
)

licence_extensions = Table(
    "licence_extensions", metadata,
    Column("id", ID, Identity(), primary_key=True),
    Column("subscription_id", BigInteger().with_variant(Integer, "sqlite"), ForeignKey("subscriptions.id"),
           nullable=False),
    Column("zoho_order_id", BigInteger().with_variant(Integer, "sqlite"), ForeignKey("zoho_orders.id"),
           nullable=False, unique=True),
    Column("months", Integer, nullable=False),
    Column("previous_expiry", UTCDateTime, nullable=False),
    Column("new_expiry", UTCDateTime, nullable=False),
    Column("cause", Text, nullable=False),
    Column("extended_at", UTCDateTime, nullable=False),
    Index("licence_extensions_subscription_idx", "subscription_id"),
)

licence_reminders = Table(
    "licence_reminders", metadata,
    Column("subscription_id", BigInteger().with_variant(Integer, "sqlite"), ForeignKey("subscriptions.id"),
           primary_key=True, autoincrement=False),
    Column("expires_at", UTCDateTime, primary_key=True),
    Column("zoho_order_id", BigInteger().with_variant(Integer, "sqlite"), ForeignKey("zoho_orders.id"),
           nullable=False),
    Column("event_id", Text),
    Column("slot_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime, nullable=False),
)

status_history = Table(
    "status_history", metadata,
    Column("id", ID, Identity(), primary_key=True),
    Column("table_name", Text, nullable=False),
    Column("row_id", BigInteger().with_variant(Integer, "sqlite"), nullable=False),
    Column("from_status", Text),
    Column("to_status", Text, nullable=False),
    Column("cause", Text, nullable=False),
    Column("worker_id", Text),
    Column("created_at", UTCDateTime, nullable=False, server_default=NOW),
    Index("status_history_row_idx", "table_name", "row_id"),
)

provider_state = Table(
    "provider_state", metadata,
    Column("provider", Text, primary_key=True),
    Column("balance", Numeric(18, 4)),
    Column("balance_checked_at", UTCDateTime),
    Column("access_token", Text),
    Column("token_expires_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False, server_default=NOW),
    Column("token_refresh_by", Text),
    Column("token_refresh_until", UTCDateTime),
    Column("token_refresh_at", UTCDateTime),
)

pauses = Table(
    "pauses", metadata,
    Column("key", Text, primary_key=True),
    Column("reason", Text),
    Column("detail", Text),
    Column("paused_until", UTCDateTime),
    Column("consecutive_failures", Integer, nullable=False, server_default=text("0")),
    Column("probe_by", Text),
    Column("probe_until", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False, server_default=NOW),
)

rate_limits = Table(
    "rate_limits", metadata,
    Column("key", Text, primary_key=True),
    Column("grants", Text, nullable=False, server_default=text("'[]'")),
    Column("updated_at", UTCDateTime, nullable=False, server_default=NOW),
)

quotas = Table(
    "quotas", metadata,
    Column("key", Text, primary_key=True),
    Column("day", Text, nullable=False, server_default=text("''")),
    Column("used", Integer, nullable=False, server_default=text("0")),
    Column("updated_at", UTCDateTime, nullable=False, server_default=NOW),
)

schedule_runs = Table(
    "schedule_runs", metadata,
    Column("job", Text, primary_key=True),
    Column("slot_at", UTCDateTime, primary_key=True),
    Column("claimed_by", Text, nullable=False),
    Column("lease_until", UTCDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("1")),
    Column("finished_at", UTCDateTime),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False, server_default=NOW),
)

operator_actions = Table(
    "operator_actions", metadata,
    Column("id", ID, Identity(), primary_key=True),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("detail", Text),
    Column("created_at", UTCDateTime, nullable=False, server_default=NOW),
)

idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("client", Text, primary_key=True),
    Column("idempotency_key", Text, primary_key=True),
    Column("fingerprint", Text, nullable=False),
    Column("claimed_by", Text),
    Column("locked_until", UTCDateTime),
    Column("order_id", Text),
    Column("status_code", Integer),
    Column("response_headers", Text),
    Column("response_body", Text),
    Column("created_at", UTCDateTime, nullable=False, server_default=NOW),
    Column("expires_at", UTCDateTime, nullable=False),
    Index("idempotency_keys_expiry_idx", "expires_at"),
)

schema_migrations = Table(
    "schema_migrations", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("name", Text, nullable=False),
    Column("applied_at", UTCDateTime, nullable=False, server_default=NOW),
)

OUTBOX_TABLES = (mtn_orders, zoho_orders, webhook_deliveries)
STATUSES_BY_TABLE = {mtn_orders.name: ORDER_STATUSES, zoho_orders.name: ORDER_STATUSES,
                     webhook_deliveries.name: DELIVERY_STATUSES}
