-- 0001_init: the schema of CONTRACT §5.
-- Applied by `upstream_app --migrate` inside one transaction together with its
-- row in schema_migrations, so a file must not contain BEGIN/COMMIT nor
-- statements that refuse to run in a transaction (CREATE INDEX CONCURRENTLY).

CREATE TABLE articles (
    id         bigserial   PRIMARY KEY,
    title      text        NOT NULL,
    body       text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orders (
    id          bigserial   PRIMARY KEY,
    customer_id bigint      NOT NULL,
    status      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE order_items (
    id               bigserial PRIMARY KEY,
    order_id         bigint    NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    sku              text      NOT NULL,
    quantity         int       NOT NULL CHECK (quantity > 0),
    unit_price_cents bigint    NOT NULL
);

-- GET /orders loads the items of a page of orders in one query: WHERE order_id = ANY($1).
CREATE INDEX order_items_order_id_idx ON order_items(order_id);
