"""each store's call-list inputs that do not change by the day, kept by triggers

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07

The call list scores every store it considers: for an administrator, 10,000 stores, each
joined to its stored next-order prediction (the median interval between orders, the expected
order value and the last order date the prediction was made from, all inside the `details`
JSON, parsed again wherever the ranking used them) and at-risk prediction, and to `stores` for
the rep and whether it is active. That was most of the call list's work.

`call_list_stores` holds one narrow row per store with exactly that: its rep, whether it is
active, and its next-order and at-risk figures (the newest prediction of each kind), typed;
and the due date of its oldest unpaid invoice, which says whether and for how long it is
overdue on any day (its money overdue on a day is its unpaid invoices due before it, so the
oldest of them is late if any is). Statement-level triggers on `stores`, `predictions` and
`invoices` (whose amounts due payments update) rewrite the rows of the stores each
statement touched (one pass over its rows, not a call per row: training's delete and reload of
every prediction rewrite every store once each, about half a second at 10,000 stores), in the
same transaction, so the table always agrees with its sources. A team or the fleet is then one
scan of a narrow table, not a join of five sources and a grouping of 21,000 late invoices; the
last order and complaints are still read live.

The value part of a store's score is scaled by the largest expected value among the stores
considered; an index orders the rows by it, so that largest value is the first row of the
index that belongs to one of those stores, not a pass over all of them.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# (trigger name, table, event, transition tables, the stores the statement touched)
TRIGGERS = (
    (
        "stores_call_list_insert",
        "stores",
        "INSERT",
        "NEW TABLE AS changed_new",
        "SELECT id FROM changed_new",
    ),
    (
        "stores_call_list_update",
        "stores",
        "UPDATE",
        "OLD TABLE AS changed_old NEW TABLE AS changed_new",
        "SELECT n.id FROM changed_new n LEFT JOIN changed_old o ON o.id = n.id "
        "WHERE (n.rep_id, n.is_active) IS DISTINCT FROM (o.rep_id, o.is_active) "
        "UNION SELECT o.id FROM changed_old o WHERE o.id NOT IN (SELECT id FROM changed_new)",
    ),
    (
        "invoices_call_list_insert",
        "invoices",
        "INSERT",
        "NEW TABLE AS changed_new",
        "SELECT store_id FROM changed_new",
    ),
    (
        "invoices_call_list_update",
        "invoices",
        "UPDATE",
        "OLD TABLE AS changed_old NEW TABLE AS changed_new",
        "SELECT n.store_id FROM changed_new n JOIN changed_old o ON o.id = n.id "
        "WHERE (n.store_id, n.due_date, n.due_amount > 0) "
        "IS DISTINCT FROM (o.store_id, o.due_date, o.due_amount > 0) "
        "UNION SELECT o.store_id FROM changed_new n JOIN changed_old o ON o.id = n.id "
        "WHERE n.store_id IS DISTINCT FROM o.store_id",
    ),
    (
        "invoices_call_list_delete",
        "invoices",
        "DELETE",
        "OLD TABLE AS changed_old",
        "SELECT store_id FROM changed_old",
    ),
    (
        "predictions_call_list_insert",
        "predictions",
        "INSERT",
        "NEW TABLE AS changed_new",
        "SELECT store_id FROM changed_new WHERE kind IN ('next_order', 'at_risk')",
    ),
    (
        "predictions_call_list_update",
        "predictions",
        "UPDATE",
        "OLD TABLE AS changed_old NEW TABLE AS changed_new",
        "SELECT store_id FROM changed_new WHERE kind IN ('next_order', 'at_risk') "
        "UNION SELECT store_id FROM changed_old WHERE kind IN ('next_order', 'at_risk')",
    ),
    (
        "predictions_call_list_delete",
        "predictions",
        "DELETE",
        "OLD TABLE AS changed_old",
        "SELECT store_id FROM changed_old WHERE kind IN ('next_order', 'at_risk')",
    ),
)

# The rows of the stores `ids`, as their sources have them now (a store gone: its row too).
# The rows are locked first, in store order: a concurrent transaction rewriting one of them
# waits until this one commits, and its own reads (each statement of a volatile function takes
# a new snapshot) then see what this one changed, so the later rewrite wins with both changes.
SYNC_SQL = """
CREATE FUNCTION call_list_stores_sync(ids integer[]) RETURNS void LANGUAGE sql AS $$
    SELECT 1 FROM call_list_stores WHERE store_id = ANY(ids) ORDER BY store_id FOR UPDATE;
    DELETE FROM call_list_stores c
    WHERE c.store_id = ANY(ids) AND NOT EXISTS (SELECT 1 FROM stores s WHERE s.id = c.store_id);
    INSERT INTO call_list_stores AS c (store_id, rep_id, is_active, predicted, next_probability,
                                       usual, expected, trained_last, flagged, risk,
                                       oldest_open_due)
    SELECT s.id, s.rep_id, s.is_active, nxt.store_id IS NOT NULL, nxt.probability,
           CAST(nxt.details ->> 'median_interval_days' AS float8),
           CAST(nxt.details ->> 'expected_value' AS float8),
           CAST(nxt.details ->> 'last_order_date' AS date),
           r.store_id IS NOT NULL, r.probability,
           (SELECT min(i.due_date) FROM invoices i WHERE i.store_id = s.id AND i.due_amount > 0)
    FROM stores s
    LEFT JOIN LATERAL (
      SELECT p.store_id, p.probability, p.details
      FROM predictions p WHERE p.kind = 'next_order' AND p.store_id = s.id
      ORDER BY p.id DESC LIMIT 1) nxt ON true
    LEFT JOIN LATERAL (
      SELECT p.store_id, p.probability
      FROM predictions p WHERE p.kind = 'at_risk' AND p.store_id = s.id
      ORDER BY p.id DESC LIMIT 1) r ON true
    WHERE s.id = ANY(ids)
    ON CONFLICT (store_id) DO UPDATE SET
      rep_id = EXCLUDED.rep_id, is_active = EXCLUDED.is_active,
      predicted = EXCLUDED.predicted, next_probability = EXCLUDED.next_probability,
      usual = EXCLUDED.usual, expected = EXCLUDED.expected,
      trained_last = EXCLUDED.trained_last, flagged = EXCLUDED.flagged, risk = EXCLUDED.risk,
      oldest_open_due = EXCLUDED.oldest_open_due;
$$
"""


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE call_list_stores (
            store_id integer PRIMARY KEY REFERENCES stores (id) ON DELETE CASCADE,
            rep_id integer,
            is_active boolean NOT NULL,
            predicted boolean NOT NULL,
            next_probability float8,
            usual float8,
            expected float8,
            trained_last date,
            flagged boolean NOT NULL,
            risk float8,
            oldest_open_due date
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_call_list_stores_expected ON call_list_stores (expected DESC) "
        "WHERE expected IS NOT NULL"
    )
    op.execute(SYNC_SQL)
    for name, table, event, transition, ids in TRIGGERS:
        op.execute(
            f"""
            CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM call_list_stores_sync(ARRAY(
                    SELECT DISTINCT t.id FROM ({ids}) AS t (id) WHERE t.id IS NOT NULL));
                RETURN NULL;
            END $$
            """
        )
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {transition} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
        )
    op.execute(
        """
        CREATE FUNCTION call_list_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM call_list_stores_sync(ARRAY(SELECT id FROM stores));
            RETURN NULL;
        END $$
        """
    )
    for table in ("predictions", "invoices"):
        op.execute(
            f"CREATE TRIGGER {table}_call_list_truncate AFTER TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION call_list_truncate()"
        )
    op.execute("SELECT call_list_stores_sync(ARRAY(SELECT id FROM stores))")


def downgrade() -> None:
    for table in ("predictions", "invoices"):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_call_list_truncate ON {table}")
    op.execute("DROP FUNCTION IF EXISTS call_list_truncate()")
    for name, table, _, _, _ in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.execute("DROP FUNCTION IF EXISTS call_list_stores_sync(integer[])")
    op.execute("DROP TABLE IF EXISTS call_list_stores")
