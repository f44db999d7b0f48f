#include "upstream_app/routes/orders.h"

#include <limits>

#include "common/obs/log.h"
#include "upstream_app/app_context.h"
#include "upstream_app/json/json.h"
#include "upstream_app/routes/input.h"
#include "upstream_app/routes/params.h"

namespace app::routes {

namespace {

// LATERAL makes the planner fetch each page order's items through order_items_order_id_idx
// (a plain join of the CTE picks a hash join over all of order_items: 2-3x slower at limit 20).
// Result columns shared by every order query: order (0-3), item (4-7; NULL for an order without items).
#define APP_ORDER_COLUMNS                                                           \
  "o.id, o.customer_id, o.status, "                                                 \
  "to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), " \
  "i.id, i.sku, i.quantity, i.unit_price_cents"

constexpr const char* kListOrders =
    "WITH page AS ("
    "SELECT id, customer_id, status, created_at FROM orders WHERE id < $2 ORDER BY id DESC LIMIT $1) "
    "SELECT " APP_ORDER_COLUMNS
    " FROM page o LEFT JOIN LATERAL ("
    "SELECT id, sku, quantity, unit_price_cents FROM order_items WHERE order_id = o.id ORDER BY id) i ON true"
    " ORDER BY o.id DESC, i.id";

constexpr const char* kGetOrder = "SELECT " APP_ORDER_COLUMNS
                                  " FROM orders o LEFT JOIN order_items i ON i.order_id = o.id"
                                  " WHERE o.id = $1 ORDER BY i.id";

// $1 customer_id, $2 skus text[], $3 quantities int[], $4 unit prices bigint[] (same length).
constexpr const char* kInsertOrder =
    "WITH o AS ("
    "INSERT INTO orders (customer_id, status) VALUES ($1, 'pending')"
    " RETURNING id, customer_id, status, created_at), "
    "i AS ("
    "INSERT INTO order_items (order_id, sku, quantity, unit_price_cents)"
    " SELECT o.id, x.sku, x.quantity, x.unit_price_cents"
    " FROM o, unnest($2::text[], $3::int[], $4::bigint[]) WITH ORDINALITY AS x(sku, quantity, unit_price_cents, n)"
    " ORDER BY x.n"
    " RETURNING id, order_id, sku, quantity, unit_price_cents) "
    "SELECT " APP_ORDER_COLUMNS " FROM o LEFT JOIN i ON i.order_id = o.id ORDER BY i.id";

// Streams rows (ordered by order, then item) as order objects; returns how many orders, and the
// last order's id text in *lastId.
int writeOrders(json::Writer& w, const db::PgResult& res, std::string_view* lastId) {
  int orders = 0;
  std::string_view current;
  const int rows = res.rows();
  for (int row = 0; row < rows; ++row) {
    std::string_view id = res.value(row, 0);
    if (orders == 0 || id != current) {
      if (orders > 0) {
        w.EndArray();
        w.EndObject();
      }
      ++orders;
      current = id;
      w.StartObject();
      json::key(w, "id");
      json::rawNumber(w, id);
      json::key(w, "customer_id");
      json::rawNumber(w, res.value(row, 1));
      json::key(w, "status");
      json::string(w, res.value(row, 2));
      json::key(w, "created_at");
      json::string(w, res.value(row, 3));
      json::key(w, "items");
      w.StartArray();
    }
    if (res.isNull(row, 4)) {
      continue;  // an order without items (LEFT JOIN)
    }
    w.StartObject();
    json::key(w, "id");
    json::rawNumber(w, res.value(row, 4));
    json::key(w, "sku");
    json::string(w, res.value(row, 5));
    json::key(w, "quantity");
    json::rawNumber(w, res.value(row, 6));
    json::key(w, "unit_price_cents");
    json::rawNumber(w, res.value(row, 7));
    w.EndObject();
  }
  if (orders > 0) {
    w.EndArray();
    w.EndObject();
  }
  if (lastId != nullptr) {
    *lastId = current;
  }
  return orders;
}

std::string singleOrderJson(const db::PgResult& res) {
  json::Buffer buf;
  json::Writer w(buf);
  writeOrders(w, res, nullptr);
  return std::string(json::view(buf));
}

// Runs the insert and answers; with an idempotency key, stores the result (or gives the key up).
void insertOrder(AppContext& ctx, Responder reply, const NewOrder& order, std::string idemKey,
                 std::string fingerprint) {
  std::vector<std::string_view> skus;
  std::vector<int64_t> quantities;
  std::vector<int64_t> prices;
  skus.reserve(order.items.size());
  quantities.reserve(order.items.size());
  prices.reserve(order.items.size());
  for (const NewOrderItem& item : order.items) {
    skus.push_back(item.sku);
    quantities.push_back(item.quantity);
    prices.push_back(item.unitPriceCents);
  }
  db::Transaction tx;
  tx.label = "orders.create";
  tx.idempotent = false;  // a lost COMMIT acknowledgement must not create a second order
  tx.statements.push_back(db::PgStatement{kInsertOrder,
                                          {std::to_string(order.customerId), textArrayLiteral(skus),
                                           intArrayLiteral(quantities), intArrayLiteral(prices)}});
  ctx.pool().run(std::move(tx),
                 [&ctx, reply, idemKey = std::move(idemKey), fingerprint = std::move(fingerprint)](db::TxResult res) {
                   if (!res.ok() || res.results.empty() || res.results[0].rows() == 0) {
                     if (!idemKey.empty()) {
                       ctx.idempotency().abandon(idemKey, fingerprint);
                     }
                     if (!res.ok()) {
                       reply.dbError(res.error, "orders.create");
                     } else {
                       reply.error(500, "the order was not created");
                     }
                     return;
                   }
                   std::string body = singleOrderJson(res.results[0]);
                   std::string location = "Location: /orders/" + std::string(res.results[0].value(0, 0)) + "\r\n";
                   if (idemKey.empty()) {
                     reply.json(201, body, location);
                     return;
                   }
                   ctx.idempotency().complete(idemKey, fingerprint, 201, body,
                                              [reply, body, location](bool) { reply.json(201, body, location); });
                 });
}

}  // namespace

void listOrders(RouteRequest& r) {
  OrdersPageQueryResult q = parseOrdersPageQuery(r.query);
  if (!q.ok()) {
    r.reply.error(400, q.error, q.field);
    return;
  }
  db::Transaction tx;
  tx.label = "orders.list";
  const int64_t after = q.query.after.value_or(std::numeric_limits<int64_t>::max());
  tx.statements.push_back(db::PgStatement{kListOrders, {std::to_string(q.query.limit), std::to_string(after)}});
  AppContext& ctx = r.ctx;
  const int limit = q.query.limit;
  ctx.pool().run(std::move(tx), [&ctx, reply = r.reply, limit](db::TxResult res) {
    if (!res.ok()) {
      reply.dbError(res.error, "orders.list");
      return;
    }
    json::Buffer& buf = ctx.scratch();
    json::Writer w(buf);
    w.StartObject();
    json::key(w, "orders");
    w.StartArray();
    std::string_view lastId;
    const int count = res.results.empty() ? 0 : writeOrders(w, res.results[0], &lastId);
    w.EndArray();
    json::key(w, "next_after");
    if (count == limit && !lastId.empty()) {
      json::rawNumber(w, lastId);
    } else {
      w.Null();
    }
    w.EndObject();
    reply.json(200, json::view(buf));
  });
}

void getOrder(RouteRequest& r) {
  auto id = parsePositiveId(r.id);
  if (!id) {
    r.reply.error(400, "order id must be a positive integer", "id");
    return;
  }
  db::Transaction tx;
  tx.label = "orders.get";
  tx.statements.push_back(db::PgStatement{kGetOrder, {std::to_string(*id)}});
  r.ctx.pool().run(std::move(tx), [reply = r.reply](db::TxResult res) {
    if (!res.ok()) {
      reply.dbError(res.error, "orders.get");
      return;
    }
    if (res.results.empty() || res.results[0].rows() == 0) {
      reply.error(404, "order not found");
      return;
    }
    reply.json(200, singleOrderJson(res.results[0]));
  });
}

void createOrder(RouteRequest& r) {
  auto order = std::make_shared<NewOrder>();
  if (InputError e = parseNewOrder(r.body, *order); !e.ok()) {
    r.reply.error(422, e.message, e.field);
    return;
  }
  AppContext& ctx = r.ctx;
  const http::HeaderList& headers = r.conn.request().headers;
  if (headers.count("Idempotency-Key") == 0) {
    insertOrder(ctx, r.reply, *order, {}, {});
    return;
  }
  std::string key = r.header("Idempotency-Key");
  if (headers.count("Idempotency-Key") > 1 || !IdempotencyStore::validKey(key)) {
    r.reply.error(400, "Idempotency-Key must be one value of 1 to 255 visible ASCII characters", "Idempotency-Key");
    return;
  }
  std::string fingerprint = orderFingerprint(*order);
  ctx.idempotency().begin(
      key, fingerprint, [&ctx, reply = r.reply, order, key, fingerprint](IdempotencyStore::Begin b) mutable {
        switch (b.outcome) {
          case IdempotencyStore::Outcome::Proceed:
            insertOrder(ctx, reply, *order, std::move(key), std::move(fingerprint));
            return;
          case IdempotencyStore::Outcome::Replay:
            ++ctx.stats().idempotentReplays;
            reply.json(b.status, b.body, "Idempotent-Replayed: true\r\n");
            return;
          case IdempotencyStore::Outcome::Mismatch:
            ++ctx.stats().idempotencyConflicts;
            reply.error(422, "Idempotency-Key was already used with a different request body", "Idempotency-Key");
            return;
          case IdempotencyStore::Outcome::InProgress:
            ++ctx.stats().idempotencyConflicts;
            reply.error(409, "a request with this Idempotency-Key is still in progress", "Idempotency-Key",
                        "Retry-After: 1\r\n");
            return;
          case IdempotencyStore::Outcome::Unavailable:
            obs::warn("idempotency store unavailable", obs::LogFields().str("error", b.error));
            reply.error(503, "idempotency store unavailable", {}, "Retry-After: 1\r\n");
            return;
        }
      });
}

}  // namespace app::routes
