#include "upstream_app/routes/heavy.h"

#include "upstream_app/app_context.h"
#include "upstream_app/json/json.h"

namespace app::routes {

namespace {

constexpr const char* kTopSkus =
    "SELECT i.sku, count(*), sum(i.quantity), sum(i.quantity * i.unit_price_cents), count(DISTINCT o.customer_id)"
    " FROM order_items i JOIN orders o ON o.id = i.order_id"
    " GROUP BY i.sku ORDER BY 4 DESC, i.sku LIMIT 10";
constexpr const char* kArticleDigest =
    "SELECT count(*), COALESCE(sum(octet_length(body)), 0), md5(COALESCE(string_agg(md5(body), '' ORDER BY id), ''))"
    " FROM articles";

}  // namespace

void heavy(RouteRequest& r) {
  db::Transaction tx;
  tx.label = "heavy";
  tx.statements.push_back(db::PgStatement{kTopSkus, {}});
  tx.statements.push_back(db::PgStatement{kArticleDigest, {}});
  AppContext& ctx = r.ctx;
  ctx.pool().run(std::move(tx), [&ctx, reply = r.reply](db::TxResult res) {
    if (!res.ok()) {
      reply.dbError(res.error, "heavy");
      return;
    }
    const db::PgResult& skus = res.results[0];
    const db::PgResult& digest = res.results[1];
    json::Buffer& buf = ctx.scratch();
    json::Writer w(buf);
    w.StartObject();
    json::key(w, "top_skus");
    w.StartArray();
    for (int row = 0; row < skus.rows(); ++row) {
      w.StartObject();
      json::key(w, "sku");
      json::string(w, skus.value(row, 0));
      json::key(w, "lines");
      json::rawNumber(w, skus.value(row, 1));
      json::key(w, "units");
      json::rawNumber(w, skus.value(row, 2));
      json::key(w, "revenue_cents");
      json::rawNumber(w, skus.value(row, 3));
      json::key(w, "customers");
      json::rawNumber(w, skus.value(row, 4));
      w.EndObject();
    }
    w.EndArray();
    json::key(w, "articles");
    w.StartObject();
    json::key(w, "count");
    json::rawNumber(w, digest.value(0, 0));
    json::key(w, "body_bytes");
    json::rawNumber(w, digest.value(0, 1));
    json::key(w, "digest");
    json::string(w, digest.value(0, 2));
    w.EndObject();
    w.EndObject();
    reply.json(200, json::view(buf));
  });
}

}  // namespace app::routes
