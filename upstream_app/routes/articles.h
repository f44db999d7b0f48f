#pragma once
// GET /articles/{id} and PUT /articles/{id} (CONTRACT §5).
//
// GET: the article's JSON {"id","title","body","updated_at"} through the Redis cache-aside of
// ArticleCache; strong ETag (routes/etag.h) and `Cache-Control: public, max-age=<cache_ttl>`;
// If-None-Match -> 304 with the same two headers; 404 when absent; 400 when id is not a positive
// integer.
// PUT: {"title": non-empty string, "body": string} -> UPDATE ... updated_at = now() RETURNING the
// row; the cache entry (and any fill lock) is deleted before the 200 answer, so the writer's next
// GET sees its write. 422 naming the field on bad input, 404 when absent.
// updated_at is RFC 3339 in UTC with microseconds ("2024-01-01T00:42:00.000000Z").
#include "upstream_app/cache/article_cache.h"
#include "upstream_app/db/pool.h"
#include "upstream_app/routes/route.h"

namespace app::routes {

void getArticle(RouteRequest& r);
void putArticle(RouteRequest& r);

// ArticleCache's loader: one indexed read through the pool.
ArticleCache::Loader articleLoader(db::Pool& pool);

}  // namespace app::routes
