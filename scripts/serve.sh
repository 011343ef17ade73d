#!/usr/bin/env bash
# Sets everything up and runs the service on this machine: the fake gateway (with failures,
# so retries show), the web app on http://127.0.0.1:8080 and a django-q2 cluster.
# Set GATEWAY_ADDR to use a real gateway instead; DATABASE_URL for PostgreSQL.
source "$(dirname "$0")/setup.sh"
export DEBUG=${DEBUG:-1}
PORT=${PORT:-8080}
GATEWAY_PORT=${GATEWAY_PORT:-8081}
ADMIN_USER=${ADMIN_USER:-admin}
ADMIN_PASSWORD=${ADMIN_PASSWORD:-admin}
mkdir -p var

.venv/bin/python manage.py migrate --noinput
.venv/bin/python manage.py collectstatic --noinput --verbosity 0
ADMIN_USER="$ADMIN_USER" ADMIN_PASSWORD="$ADMIN_PASSWORD" .venv/bin/python manage.py shell -c "
import os
from django.contrib.auth import get_user_model
User = get_user_model()
if not User.objects.filter(username=os.environ['ADMIN_USER']).exists():
    User.objects.create_superuser(os.environ['ADMIN_USER'], '', os.environ['ADMIN_PASSWORD'])
" >/dev/null

pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

if [ -z "${GATEWAY_ADDR:-}" ]; then
  export GATEWAY_ADDR="http://127.0.0.1:${GATEWAY_PORT}"
  .venv/bin/python manage.py fake_gateway --port "$GATEWAY_PORT" \
    --failure-rate "${FAKE_FAILURE_RATE:-0.2}" --fail-after-write-rate "${FAKE_FAIL_AFTER_WRITE_RATE:-0.05}" &
  pids+=($!)
  gateway_note="fake gateway on $GATEWAY_ADDR (20% of calls fail, 5% fail after writing; state at $GATEWAY_ADDR/fake-gateway/state)"
else
  gateway_note="gateway at $GATEWAY_ADDR"
fi

.venv/bin/gunicorn project.wsgi --bind "127.0.0.1:${PORT}" --workers 2 --threads 4 \
  --access-logfile - --log-level warning &
pids+=($!)
.venv/bin/python manage.py qcluster &
pids+=($!)

cat <<INFO

  Tickets outbox is running.
    web app     http://127.0.0.1:${PORT}
    admin       http://127.0.0.1:${PORT}/admin/   (user: ${ADMIN_USER}, password: ${ADMIN_PASSWORD})
    ${gateway_note}

  Try:
    curl -i http://127.0.0.1:${PORT}/tickets-status -H 'Content-Type: application/json' \\
      -H 'Idempotency-Key: demo-1' -d '{"tickets": [{"ticket_id": "demo-1", "status": "confirmed",
      "customer_email": "ada@example.com", "price": {"amount": "50.00", "currency": "EUR"}}]}'
    DEBUG=1 .venv/bin/python manage.py simulate --url http://127.0.0.1:${PORT} --orders 20 --tickets-per-order 5 --cancel-rate 0.2
    DEBUG=1 .venv/bin/python manage.py outbox_status

  Ctrl-C stops everything.
INFO

wait -n "${pids[@]}"
