#pragma once
// GET /healthz (200 {"ok":true}, no dependency checked) and GET /readyz (the ReadinessChecker's
// SELECT 1 and PING: 200 {"db":"ok","cache":"ok"}, else 503 naming the part that is down).
#include "upstream_app/routes/route.h"

namespace app::routes {

void healthz(RouteRequest& r);
void readyz(RouteRequest& r);

}  // namespace app::routes
