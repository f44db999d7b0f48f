#pragma once
// GET /orders/{id}/shipment (CONTRACT §5): the order's shipment from the external shipping service.
//
//   1. id not a positive integer -> 400; the order is looked up (`SELECT 1 FROM orders WHERE id`)
//      -> 404 "order not found" when absent; database failures as every route (Responder::dbError).
//   2. Redis `GET app:shipment:<id>`: a hit is answered as is (X-Cache: hit). Redis down or slow
//      (redis.command_timeout) -> step 3, counted cache_requests_total{cache="shipment",
//      result="error"}.
//   3. ShippingClient::fetch(id) (shipping/shipping_client.h: pool, timeouts, retries, breaker):
//      200 -> answered, then stored with `SET app:shipment:<id> <body> PX 10000` (kShipmentTtl,
//      fire and forget); errors: 404 "shipment not found", 503 "shipping unavailable" (breaker
//      open, pool busy), 504 "shipping timeout", 502 "shipping error" (see answerFor()).
//
// The shipment id is the order id. Body: {"order_id": <id>, "shipment": <the service's JSON,
// verbatim>} with Cache-Control: no-store (a shipment's state changes; the Redis TTL is the
// only caching).
#include <chrono>
#include <string>

#include "upstream_app/routes/route.h"

namespace app::routes {

inline constexpr std::chrono::milliseconds kShipmentTtl{10000};

void getShipment(RouteRequest& r);

// "app:shipment:<id>"
std::string shipmentCacheKey(int64_t orderId);
// {"order_id":<id>,"shipment":<serviceJson>}; serviceJson must be valid JSON.
std::string shipmentBody(int64_t orderId, std::string_view serviceJson);

}  // namespace app::routes
