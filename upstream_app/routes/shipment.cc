#include "upstream_app/routes/shipment.h"

#include "common/obs/log.h"
#include "upstream_app/app_context.h"
#include "upstream_app/json/json.h"
#include "upstream_app/routes/params.h"

namespace app::routes {

namespace {

constexpr const char* kOrderExists = "SELECT 1 FROM orders WHERE id = $1";

void callService(AppContext& ctx, Responder reply, int64_t id) {
  ctx.shipping().fetch(id, [&ctx, reply, id](shipping::ShipmentResult res) {
    if (res.outcome == shipping::Outcome::Ok) {
      std::string body = shipmentBody(id, res.body);
      reply.json(200, body, "X-Cache: miss\r\nCache-Control: no-store\r\n");
      ctx.redis().command({"SET", shipmentCacheKey(id), std::move(body), "PX", std::to_string(kShipmentTtl.count())},
                          [](redisx::RedisResult) {});
      return;
    }
    const shipping::Answer a = shipping::answerFor(res.outcome);
    if (res.outcome != shipping::Outcome::NotFound) {
      http::ServerConnection* c = reply.connection();
      obs::warn("shipping request failed", obs::LogFields()
                                               .str("outcome", shipping::outcomeName(res.outcome))
                                               .str("detail", res.detail)
                                               .num("tries", res.tries)
                                               .num("status", a.status)
                                               .str("request_id", c != nullptr ? c->requestId() : ""));
    }
    reply.error(a.status, a.error, {}, a.retryAfter ? "Retry-After: 1\r\n" : "");
  });
}

}  // namespace

std::string shipmentCacheKey(int64_t orderId) { return "app:shipment:" + std::to_string(orderId); }

std::string shipmentBody(int64_t orderId, std::string_view serviceJson) {
  std::string out;
  out.reserve(serviceJson.size() + 48);
  out.append("{\"order_id\":").append(std::to_string(orderId)).append(",\"shipment\":");
  out.append(serviceJson);
  out.push_back('}');
  return out;
}

void getShipment(RouteRequest& r) {
  auto id = parsePositiveId(r.id);
  if (!id) {
    r.reply.error(400, "order id must be a positive integer", "id");
    return;
  }
  db::Transaction tx;
  tx.label = "orders.exists";
  tx.statements.push_back(db::PgStatement{kOrderExists, {std::to_string(*id)}});
  AppContext& ctx = r.ctx;
  const int64_t orderId = *id;
  ctx.pool().run(std::move(tx), [&ctx, reply = r.reply, orderId](db::TxResult res) {
    if (!res.ok()) {
      reply.dbError(res.error, "orders.exists");
      return;
    }
    if (res.results.empty() || res.results[0].rows() == 0) {
      reply.error(404, "order not found");
      return;
    }
    if (reply.connection() == nullptr) {
      return;  // the client left: no need to ask anyone
    }
    ctx.redis().command({"GET", shipmentCacheKey(orderId)}, [&ctx, reply, orderId](redisx::RedisResult cached) {
      LoopGauges& g = ctx.loopGauges();
      if (cached.ok() && cached.reply.type == redisx::ReplyType::String) {
        g.shipmentHits.fetch_add(1, std::memory_order_relaxed);
        reply.json(200, cached.reply.str, "X-Cache: hit\r\nCache-Control: no-store\r\n");
        return;
      }
      if (cached.ok()) {
        g.shipmentMisses.fetch_add(1, std::memory_order_relaxed);
      } else {
        g.shipmentErrors.fetch_add(1, std::memory_order_relaxed);
      }
      if (reply.connection() == nullptr) {
        return;
      }
      callService(ctx, reply, orderId);
    });
  });
}

}  // namespace app::routes
