#pragma once
// The orders API of CONTRACT §5.
//
// GET /orders?limit=N&after=ID
//   Newest first (highest id first), keyset pagination: `after` is the last id of the previous
//   page, `next_after` in the answer is the value for the next page (null on the last page).
//   limit 1..100, default 20; bad values -> 400 naming the parameter.
//   ONE statement whatever N (plus the pool's set_config, in the same round trip): the page of
//   orders in a CTE, LEFT JOIN LATERAL to its items (by index), rows ordered by order then item, streamed into the
//   JSON writer. The seed's selectinload needed two; a per-order query would need N + 1.
//   {"orders":[{"id","customer_id","status","created_at","items":[{"id","sku","quantity",
//   "unit_price_cents"}]}],"next_after":ID|null}
// GET /orders/{id}: the same order object; 404 when absent; 400 when id is not a positive integer.
// POST /orders: NewOrder (routes/input.h) -> one statement (a data-modifying CTE inserting the
//   order and its items, so atomic on its own and inside the pool's implicit transaction);
//   201 with the order and `Location: /orders/{id}`; 422 naming the field on bad input.
//   `Idempotency-Key` (1..255 visible ASCII, else 400): see cache/idempotency.h. A replay answers
//   the first status and body with `Idempotent-Replayed: true`; the same key with a different
//   order -> 422; still running after 2s -> 409; Redis unavailable -> 503.
#include "upstream_app/routes/route.h"

namespace app::routes {

void listOrders(RouteRequest& r);
void getOrder(RouteRequest& r);
void createOrder(RouteRequest& r);

}  // namespace app::routes
