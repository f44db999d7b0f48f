#include "upstream_app/routes/routes.h"

#include "upstream_app/routes/articles.h"
#include "upstream_app/routes/health.h"
#include "upstream_app/routes/heavy.h"
#include "upstream_app/routes/metrics.h"
#include "upstream_app/routes/orders.h"
#include "upstream_app/routes/shipment.h"

namespace app::routes {

namespace {

// GET routes answer HEAD as well.
constexpr Route kRoutes[] = {
    {HTTP_GET, "/healthz", &healthz},          {HTTP_GET, "/readyz", &readyz},
    {HTTP_GET, "/articles/{id}", &getArticle}, {HTTP_PUT, "/articles/{id}", &putArticle},
    {HTTP_GET, "/orders", &listOrders},        {HTTP_POST, "/orders", &createOrder},
    {HTTP_GET, "/orders/{id}", &getOrder},     {HTTP_GET, "/heavy", &heavy},
    {HTTP_GET, "/orders/{id}/shipment", &getShipment}, {HTTP_GET, "/metrics", &metrics},
};

}  // namespace

std::span<const Route> appRoutes() { return kRoutes; }

}  // namespace app::routes
