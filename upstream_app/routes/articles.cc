#include "upstream_app/routes/articles.h"

#include "upstream_app/app_context.h"
#include "upstream_app/json/json.h"
#include "upstream_app/routes/etag.h"
#include "upstream_app/routes/input.h"
#include "upstream_app/routes/params.h"

namespace app::routes {

namespace {

// Timestamps are formatted by the server in UTC, independent of the session's TimeZone/DateStyle
// (which PgBouncer's transaction mode would not let us set anyway).
#define APP_ARTICLE_COLUMNS \
  "id, title, body, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

constexpr const char* kSelectArticle = "SELECT " APP_ARTICLE_COLUMNS " FROM articles WHERE id = $1";
constexpr const char* kUpdateArticle =
    "UPDATE articles SET title = $2, body = $3, updated_at = now() WHERE id = $1 RETURNING " APP_ARTICLE_COLUMNS;

std::string articleJson(const db::PgResult& res, int row) {
  json::Buffer buf;
  json::Writer w(buf);
  w.StartObject();
  json::key(w, "id");
  json::rawNumber(w, res.value(row, 0));
  json::key(w, "title");
  json::string(w, res.value(row, 1));
  json::key(w, "body");
  json::string(w, res.value(row, 2));
  json::key(w, "updated_at");
  json::string(w, res.value(row, 3));
  w.EndObject();
  return std::string(json::view(buf));
}

std::string validatorHeaders(std::string_view etag, std::string_view cacheControl) {
  std::string h;
  h.reserve(64);
  h.append("ETag: ").append(etag).append("\r\nCache-Control: ").append(cacheControl).append("\r\n");
  return h;
}

}  // namespace

ArticleCache::Loader articleLoader(db::Pool& pool) {
  return [&pool](int64_t id, ArticleCache::LoadCallback cb) {
    db::Transaction tx;
    tx.label = "articles.get";
    tx.statements.push_back(db::PgStatement{kSelectArticle, {std::to_string(id)}});
    pool.run(std::move(tx), [cb = std::move(cb)](db::TxResult res) {
      ArticleCache::Loaded out;
      if (!res.ok()) {
        out.status = ArticleCache::Loaded::Status::Failed;
        out.error = std::move(res.error);
      } else if (res.results.empty() || res.results[0].rows() == 0) {
        out.status = ArticleCache::Loaded::Status::NotFound;
      } else {
        out.status = ArticleCache::Loaded::Status::Found;
        out.body = articleJson(res.results[0], 0);
      }
      cb(std::move(out));
    });
  };
}

void getArticle(RouteRequest& r) {
  auto id = parsePositiveId(r.id);
  if (!id) {
    r.reply.error(400, "article id must be a positive integer", "id");
    return;
  }
  AppContext& ctx = r.ctx;
  ctx.articles().get(*id, [&ctx, reply = r.reply, ifNoneMatch = r.header("If-None-Match")](ArticleCache::Lookup l) {
    switch (l.loaded.status) {
      case ArticleCache::Loaded::Status::Found: {
        const std::string etag = strongEtag(l.loaded.body);
        const std::string headers = validatorHeaders(etag, ctx.articleCacheControl());
        if (!ifNoneMatch.empty() && ifNoneMatchMatches(ifNoneMatch, etag)) {
          reply.send(304, {}, {}, headers);
        } else {
          reply.json(200, l.loaded.body, headers);
        }
        return;
      }
      case ArticleCache::Loaded::Status::NotFound:
        reply.error(404, "article not found");
        return;
      case ArticleCache::Loaded::Status::Failed:
        reply.dbError(l.loaded.error, "articles.get");
        return;
    }
  });
}

void putArticle(RouteRequest& r) {
  auto id = parsePositiveId(r.id);
  if (!id) {
    r.reply.error(400, "article id must be a positive integer", "id");
    return;
  }
  ArticleUpdate update;
  if (InputError e = parseArticleUpdate(r.body, update); !e.ok()) {
    r.reply.error(422, e.message, e.field);
    return;
  }
  db::Transaction tx;
  tx.label = "articles.update";
  // Setting absolute values: running it twice is harmless, so a lost connection may be retried.
  tx.idempotent = true;
  tx.statements.push_back(
      db::PgStatement{kUpdateArticle, {std::to_string(*id), std::move(update.title), std::move(update.body)}});
  AppContext& ctx = r.ctx;
  const int64_t articleId = *id;
  ctx.pool().run(std::move(tx), [&ctx, reply = r.reply, articleId](db::TxResult res) {
    if (!res.ok()) {
      reply.dbError(res.error, "articles.update");
      return;
    }
    if (res.results.empty() || res.results[0].rows() == 0) {
      reply.error(404, "article not found");
      return;
    }
    std::string body = articleJson(res.results[0], 0);
    ctx.articles().invalidate(articleId, [reply, body = std::move(body)](bool) {
      reply.json(200, body, "ETag: " + strongEtag(body) + "\r\n");
    });
  });
}

}  // namespace app::routes
