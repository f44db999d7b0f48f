#pragma once
// upstream_app's route table: every endpoint in one list, matched in order (routes/router.h).
#include <span>

#include "upstream_app/routes/route.h"

namespace app::routes {

std::span<const Route> appRoutes();

}  // namespace app::routes
