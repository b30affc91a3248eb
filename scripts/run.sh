#!/usr/bin/env bash
# Runs the marketplace: migrate, demo data, then web + Celery worker with embedded beat.
# Zero-setup by default (SQLite + Celery's filesystem broker); DATABASE_URL / REDIS_URL switch
# to PostgreSQL and Redis. Unless STRIPE_API_BASE is set (in the environment or .env), payments go to
# the demo payment server (`manage.py demo_stripe`, on DEMO_STRIPE_PORT): top-ups with a test card.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
DEMO_STRIPE_PORT="${DEMO_STRIPE_PORT:-8001}"
mkdir -p var/log

$BIN/python manage.py migrate --noinput
$BIN/python manage.py seed_demo

pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # Demo instances are local process groups started by the simulated agents: stop them too.
  $BIN/python - <<'PY' 2>/dev/null || true
import glob, json, os, signal
for path in glob.glob("var/agents/*/instances/*/process.json"):
    try:
        os.killpg(json.load(open(path))["pid"], signal.SIGTERM)
    except (OSError, ValueError, KeyError):
        pass
PY
}
trap cleanup INT TERM EXIT

# The demo payment server, before web and Celery, which are pointed at it.
listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
payments="  Payments: Stripe at ${STRIPE_API_BASE:-the STRIPE_API_BASE of .env}"
if [[ -z "${STRIPE_API_BASE:-}" ]] && ! grep -qs '^[[:space:]]*\(export[[:space:]]\+\)\?STRIPE_API_BASE=' .env; then
  if listening 127.0.0.1 "$DEMO_STRIPE_PORT"; then
    echo "Port $DEMO_STRIPE_PORT is taken: set DEMO_STRIPE_PORT to a free port for the demo payment server." >&2
    exit 1
  fi
  $BIN/python manage.py demo_stripe --port "$DEMO_STRIPE_PORT" \
    --webhook-url "http://$HOST:$PORT/billing/stripe/webhook/" >var/log/demo-stripe.log 2>&1 &
  demo_stripe_pid=$!
  pids+=("$demo_stripe_pid")
  until listening 127.0.0.1 "$DEMO_STRIPE_PORT"; do
    if ! kill -0 "$demo_stripe_pid" 2>/dev/null; then
      echo "The demo payment server did not start:" >&2
      cat var/log/demo-stripe.log >&2
      exit 1
    fi
    sleep 0.2
  done
  export STRIPE_API_BASE="http://127.0.0.1:$DEMO_STRIPE_PORT"
  payments="  Demo payments: $STRIPE_API_BASE/ (test card 4242 4242 4242 4242; no real card is charged)"
fi

$BIN/celery -A marketplace worker -B --loglevel=INFO --concurrency=2 -Q celery,billing,agents,notifications,webhooks,external \
  --schedule=var/celerybeat-schedule >var/log/celery.log 2>&1 &
pids+=($!)

if [[ -n "${DATABASE_URL:-}" ]]; then
  $BIN/python manage.py collectstatic --noinput >/dev/null
  $BIN/gunicorn marketplace.wsgi:application --bind "$HOST:$PORT" --workers 3 \
    --access-logfile var/log/web.log &
else
  $BIN/python manage.py runserver "$HOST:$PORT" --noreload >var/log/web.log 2>&1 &
fi
pids+=($!)

# Simulated host agents for the demo hosts: the real agent code, process runtime, over HTTP.
$BIN/python manage.py demo_agents --platform "http://$HOST:$PORT"
for _ in $(seq 1 60); do
  (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null && break
  sleep 0.5
done
$BIN/python -m agent fleet --config var/agents/fleet.json --interval 5 >var/log/agents.log 2>&1 &
pids+=($!)

cat <<MSG

  Compute marketplace is running: http://$HOST:$PORT/
    offers:     http://$HOST:$PORT/offers/
    API docs:   http://$HOST:$PORT/api/docs/
    admin:      http://$HOST:$PORT/admin/
  Demo logins (password demo12345):
    admin@example.com (staff) · supplier@example.com · buyer@example.com
  Simulated host agents run the demo hosts (instances are local processes).
$payments
  Logs: var/log/web.log, var/log/celery.log, var/log/agents.log, var/log/demo-stripe.log.
  Ctrl-C stops everything.

MSG
wait -n "${pids[@]}"
