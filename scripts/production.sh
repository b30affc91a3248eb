#!/usr/bin/env bash
# The production profile on one machine or many: gunicorn web processes, Celery workers by queue, one
# beat, over shared PostgreSQL and Redis. Configured only by the environment (docs/deployment.md):
#
#   DATABASE_URL, REDIS_URL           required (PostgreSQL, Redis)
#   DJANGO_SETTINGS_MODULE            marketplace.settings.production (its secrets: SECRET_KEY, ...)
#   ROLES                             what this machine runs: any of web, workers, beat, migrate
#                                     (default "migrate web workers beat": everything here)
#   WEB_PROCESSES, WEB_PORT           gunicorn instances, each on its own port from WEB_PORT (2, 8001)
#   WEB_THREADS, WEB_WORKERS          per gunicorn instance (4 threads, 1 worker process)
#   WORKER_QUEUES                     one Celery worker per group, groups split by ";"
#                                     (default "billing;agents,notifications,webhooks,external,celery")
#   WORKER_CONCURRENCY                processes per Celery worker (2)
#   BIND                              address the web processes listen on (127.0.0.1)
#
# Exactly one machine runs beat. Logs go to var/log/; stop with Ctrl-C or SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
: "${DATABASE_URL:?set DATABASE_URL (PostgreSQL)}"
: "${REDIS_URL:?set REDIS_URL (Redis: the broker, cache and throttles)}"
export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-marketplace.settings.production}"
ROLES=" ${ROLES:-migrate web workers beat} "
WEB_PROCESSES=${WEB_PROCESSES:-2}
WEB_PORT=${WEB_PORT:-8001}
WEB_THREADS=${WEB_THREADS:-4}
WEB_WORKERS=${WEB_WORKERS:-1}
WORKER_QUEUES=${WORKER_QUEUES:-billing;agents,notifications,webhooks,external,celery}
WORKER_CONCURRENCY=${WORKER_CONCURRENCY:-2}
BIND=${BIND:-127.0.0.1}
mkdir -p var/log var/run

pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

if [[ $ROLES == *" migrate "* ]]; then
  # With DATABASE_OWNER_URL the owner role migrates and the app role serves (docs/database-roles.md).
  if [[ -n "${DATABASE_OWNER_URL:-}" ]]; then
    $BIN/python manage.py migrate --noinput --database owner
  else
    $BIN/python manage.py migrate --noinput
  fi
  $BIN/python manage.py collectstatic --noinput >/dev/null
fi

if [[ $ROLES == *" web "* ]]; then
  for n in $(seq 0 $((WEB_PROCESSES - 1))); do
    port=$((WEB_PORT + n))
    $BIN/gunicorn marketplace.wsgi:application --bind "$BIND:$port" --workers "$WEB_WORKERS" \
      --threads "$WEB_THREADS" --worker-class gthread --access-logfile "var/log/web-$port.log" \
      --error-logfile "var/log/web-$port.err" --pid "var/run/web-$port.pid" &
    pids+=($!)
    echo "web: http://$BIND:$port"
  done
fi

if [[ $ROLES == *" workers "* ]]; then
  IFS=';' read -ra groups <<<"$WORKER_QUEUES"
  for queues in "${groups[@]}"; do
    name=${queues//,/-}
    $BIN/celery -A marketplace worker -Q "$queues" -n "$name@%h" --concurrency "$WORKER_CONCURRENCY" \
      --loglevel=INFO --logfile "var/log/worker-$name.log" &
    pids+=($!)
    echo "worker: queues $queues"
  done
fi

if [[ $ROLES == *" beat "* ]]; then
  $BIN/celery -A marketplace beat --loglevel=INFO --schedule var/celerybeat-schedule \
    --logfile var/log/beat.log &
  pids+=($!)
  echo "beat: one scheduler"
fi

wait -n "${pids[@]}" 2>/dev/null || true
echo "a process of the profile stopped; stopping the rest" >&2
