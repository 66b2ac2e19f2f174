#!/usr/bin/env bash
# Starts the local PostgreSQL and Redis that the service tests use, if they are not answering.
# In CI (CI=true) a service that cannot be started is an error; elsewhere the tests that need it
# skip with the reason, so this only warns.
set -euo pipefail
postgres_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; }
unavailable() {
  if [ "${CI:-}" = "true" ]; then
    echo "$1" >&2
    exit 1
  fi
  echo "warning: $1; the tests that need it will skip" >&2
}
postgres_up ||
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql 2>/dev/null)" main start ||
  unavailable "PostgreSQL is not answering on 127.0.0.1:5432 and could not be started"
redis_up ||
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no ||
  unavailable "Redis is not answering on 127.0.0.1:6379 and could not be started"
for _ in $(seq 30); do
  postgres_up && redis_up && exit 0
  sleep 1
done
postgres_up || unavailable "PostgreSQL did not come up on 127.0.0.1:5432"
redis_up || unavailable "Redis did not come up on 127.0.0.1:6379"
