#pragma once
// GET /heavy: a deliberately expensive read (the rate-limited endpoint of the demo). Two
// aggregates in one transaction: the ten best-selling SKUs (order_items joined to orders, grouped)
// and a digest of every article body (a full scan hashing ~10 MB), about 30-50 ms on the demo
// data. Bounded by statement_timeout like everything else (504 past it).
// {"top_skus":[{"sku","lines","units","revenue_cents","customers"}],
//  "articles":{"count","body_bytes","digest"}}
#include "upstream_app/routes/route.h"

namespace app::routes {

void heavy(RouteRequest& r);

}  // namespace app::routes
