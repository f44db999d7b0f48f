# syntax=docker/dockerfile:1
# PgBouncer from Debian 12 for deploy/k8s/deps (no project files needed):
#   docker build -f deploy/docker/pgbouncer.Dockerfile -t sidecar-pgbouncer:1.18 deploy/docker
FROM debian:12-slim
ARG DEBIAN_FRONTEND=noninteractive
# Debian's postinst would start the service; policy-rc.d keeps it off during the build.
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
 && apt-get update \
 && apt-get install -y --no-install-recommends pgbouncer ca-certificates \
 && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d
RUN groupadd --system --gid 10002 pgbouncer \
 && useradd --system --uid 10002 --gid 10002 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin pgbouncer
USER 10002:10002
EXPOSE 6432
# SIGINT is PgBouncer's safe shutdown (waits for clients' transactions to end);
# its SIGTERM shuts down at once.
STOPSIGNAL SIGINT
CMD ["/usr/sbin/pgbouncer", "/etc/pgbouncer/config/pgbouncer.ini"]
