"""place_order(): an order and its Idempotency-Key answer in one call, one round trip.

The api runs it as ONE statement; where the pooler tracks prepared statements that
statement runs in autocommit, so an order costs no BEGIN and no COMMIT round trip. A
function (not one statement of data-modifying CTEs) because its steps must see one
another's writes: the key is claimed FIRST, so a duplicate waiting for its key holds no
product lock, and the answer is stored on that claim LAST, once the order exists.
Every guarantee is documented in ``services/core/shop/placement.py``; a change to the
function is a new migration (``CREATE OR REPLACE FUNCTION``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PLACE_ORDER = r"""
CREATE FUNCTION place_order(
    p_key text,
    p_fingerprint text,
    p_user_id bigint,
    p_wanted_ids bigint[],
    p_wanted_qtys integer[],
    p_line_ids bigint[],
    p_line_qtys integer[],
    p_status text,
    p_confirmation_status text,
    p_task text
) RETURNS TABLE (
    claimed boolean,
    user_known boolean,
    unknown_ids bigint[],
    short_ids bigint[],
    body text,
    request_fingerprint text,
    response_status integer,
    response_body text
)
LANGUAGE plpgsql VOLATILE
AS $function$
#variable_conflict use_column
DECLARE
    v_user_known boolean;
    v_unknown_ids bigint[];
    v_short_ids bigint[];
    v_order_id bigint;
    v_body text;
BEGIN
    IF p_key IS NOT NULL THEN
        -- The claim comes first: a concurrent request with the key waits here, on the
        -- key's unique index, until this transaction ends, holding nothing else.
        INSERT INTO idempotency_keys (key, request_fingerprint)
        VALUES (p_key, p_fingerprint)
        ON CONFLICT (key) DO NOTHING;
        IF NOT FOUND THEN
            -- A statement of its own: its snapshot sees the first request's commit.
            RETURN QUERY
                SELECT false, NULL::boolean, NULL::bigint[], NULL::bigint[], NULL::text,
                    CAST(k.request_fingerprint AS text), k.response_status, k.response_body
                FROM idempotency_keys AS k WHERE k.key = p_key;
            RETURN;
        END IF;
    END IF;

    WITH wanted AS (
        SELECT * FROM unnest(p_wanted_ids, p_wanted_qtys) AS wanted (id, quantity)
    ), buyer AS (
        SELECT u.id FROM users AS u WHERE u.id = p_user_id
    ), locked AS (
        SELECT p.id, p.price_cents, p.stock FROM products AS p
        WHERE p.id = ANY (p_wanted_ids)
        ORDER BY p.id
        FOR UPDATE
    ), verdict AS (
        SELECT
            EXISTS (SELECT FROM buyer) AS user_known,
            ARRAY(
                SELECT wanted.id FROM wanted LEFT JOIN locked USING (id)
                WHERE locked.id IS NULL ORDER BY wanted.id
            ) AS unknown_ids,
            ARRAY(
                SELECT wanted.id FROM wanted JOIN locked USING (id)
                WHERE locked.stock < wanted.quantity ORDER BY wanted.id
            ) AS short_ids
    ), go AS (
        SELECT v.user_known AND v.unknown_ids = '{}' AND v.short_ids = '{}' AS ok
        FROM verdict AS v
    ), taken AS (
        UPDATE products SET stock = products.stock - wanted.quantity, updated_at = now()
        FROM wanted
        WHERE products.id = wanted.id AND (SELECT ok FROM go)
        RETURNING products.id
    ), lines AS (
        SELECT line.product_id, line.quantity, line.n, locked.price_cents
        FROM unnest(p_line_ids, p_line_qtys) WITH ORDINALITY AS line (product_id, quantity, n)
        JOIN locked ON locked.id = line.product_id
    ), placed AS (
        INSERT INTO orders (user_id, status, confirmation_status, total_cents)
        SELECT p_user_id, CAST(p_status AS order_status),
            CAST(p_confirmation_status AS confirmation_status),
            (SELECT sum(CAST(l.quantity AS bigint) * l.price_cents) FROM lines AS l)
        WHERE (SELECT ok FROM go)
        RETURNING orders.id, orders.created_at, orders.total_cents
    ), items AS (
        INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)
        SELECT placed.id, lines.product_id, lines.quantity, lines.price_cents
        FROM placed CROSS JOIN lines
        ORDER BY lines.n
        RETURNING order_items.id
    ), message AS (
        INSERT INTO outbox (task, payload)
        SELECT p_task, jsonb_build_object('order_id', placed.id) FROM placed
        RETURNING outbox.id
    )
    -- The answer, OrderPublic as JSON, rendered here once: the same bytes are returned
    -- now and stored for a replay.
    SELECT v.user_known, v.unknown_ids, v.short_ids, placed.id,
        CAST(json_build_object(
            'id', placed.id,
            'user_id', p_user_id,
            'status', p_status,
            'confirmation_status', p_confirmation_status,
            'total_cents', placed.total_cents,
            'created_at', to_char(
                placed.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'
            ),
            'items', (
                SELECT json_agg(json_build_object(
                    'product_id', l.product_id,
                    'quantity', l.quantity,
                    'unit_price_cents', l.price_cents
                ) ORDER BY l.n)
                FROM lines AS l
            )
        ) AS text)
    INTO v_user_known, v_unknown_ids, v_short_ids, v_order_id, v_body
    FROM verdict AS v LEFT JOIN placed ON true;

    IF p_key IS NOT NULL THEN
        IF v_order_id IS NULL THEN
            -- Refused: the claim goes too (as a rollback would take it), so the key can
            -- be used again; a request waiting for it then claims it.
            DELETE FROM idempotency_keys AS k WHERE k.key = p_key;
        ELSE
            UPDATE idempotency_keys AS k
            SET order_id = v_order_id, response_status = 201, response_body = v_body
            WHERE k.key = p_key;
        END IF;
    END IF;

    RETURN QUERY SELECT true, v_user_known, v_unknown_ids, v_short_ids, v_body,
        NULL::text, NULL::integer, NULL::text;
END
$function$
"""

SIGNATURE = (
    "place_order(text, text, bigint, bigint[], integer[], bigint[], integer[], text, text, text)"
)


def upgrade() -> None:
    op.execute(PLACE_ORDER)


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {SIGNATURE}")
