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
FAKE_FAILURE_RATE=${FAKE_FAILURE_RATE:-0.2}
FAKE_FAIL_AFTER_WRITE_RATE=${FAKE_FAIL_AFTER_WRITE_RATE:-0.05}
mkdir -p var

use_fake_gateway=
if [ -z "${GATEWAY_ADDR:-}" ]; then
  use_fake_gateway=1
  export GATEWAY_ADDR="http://127.0.0.1:${GATEWAY_PORT}"
  # The fake gateway writes a row before it answers, so an unclear append has settled at once:
  # a short wait keeps the demo quick. A real sheets API keeps the 60 s default.
  export SHEET_SETTLE_SECONDS=${SHEET_SETTLE_SECONDS:-5}
fi

# A development .env with the settings this script uses, so `python manage.py ...` in another
# shell (after `source .venv/bin/activate` and `export ENV_FILE=.env`) works as written. The
# settings read a .env only when ENV_FILE names it, as this script does for its processes, and
# not when the real environment turns DEBUG off; the real environment wins variable by
# variable. The secret key is made once and kept.
if [ "$DEBUG" = 1 ]; then
  secret_key=$(sed -n 's/^SECRET_KEY=//p' .env 2>/dev/null || true)
  if [ -z "$secret_key" ]; then
    secret_key=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(50))')
  fi
  {
    echo "# Written by scripts/serve.sh for development; the real environment wins over it."
    echo "DEBUG=1"
    echo "SECRET_KEY=${secret_key}"
    echo "GATEWAY_ADDR=${GATEWAY_ADDR}"
    if [ -n "${DATABASE_URL:-}" ]; then echo "DATABASE_URL=${DATABASE_URL}"; fi
  } >.env
  export ENV_FILE="$PWD/.env"
fi

echo "Applying database migrations..."
.venv/bin/python manage.py migrate --noinput --verbosity 0
.venv/bin/python manage.py collectstatic --noinput --verbosity 0
ADMIN_USER="$ADMIN_USER" ADMIN_PASSWORD="$ADMIN_PASSWORD" .venv/bin/python manage.py shell -c "
import os
from django.contrib.auth import get_user_model
User = get_user_model()
if not User.objects.filter(username=os.environ['ADMIN_USER']).exists():
    User.objects.create_superuser(os.environ['ADMIN_USER'], '', os.environ['ADMIN_PASSWORD'])
" >/dev/null

pids=()
web_pid=
cleanup() {
  trap - EXIT INT TERM
  # Ctrl-C has reached every process of the group already (the fake gateway and qcluster): a
  # second signal would tell qcluster to stop at once instead of finishing its running
  # attempts. gunicorn runs in a session of its own, so it got nothing: its master alone gets
  # one SIGTERM, a graceful stop, and stops its workers itself. (Had its workers got the
  # group's SIGINT too, the master's SIGQUIT to them would re-enter gunicorn 27's thread-pool
  # shutdown in each gthread worker, which deadlocks until the master kills it 30 s later.)
  # Otherwise (SIGTERM to this script, or one of the processes ended) stop them all.
  if [ "${1:-}" = INT ]; then
    if [ -n "$web_pid" ]; then kill -TERM "$web_pid" 2>/dev/null || true; fi
  else
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  fi
  wait 2>/dev/null || true
}
trap 'cleanup INT' INT
trap cleanup EXIT TERM

if [ -n "$use_fake_gateway" ]; then
  # The state file keeps receipts and rows across restarts, like the database does.
  .venv/bin/python manage.py fake_gateway --port "$GATEWAY_PORT" \
    --failure-rate "$FAKE_FAILURE_RATE" --fail-after-write-rate "$FAKE_FAIL_AFTER_WRITE_RATE" \
    --state-file var/fake-gateway.json &
  pids+=($!)
  percent() { .venv/bin/python -c "print(f'{float(\"$1\") * 100:g}%')"; }
  gateway_note="fake gateway on $GATEWAY_ADDR ($(percent "$FAKE_FAILURE_RATE") of calls fail, $(percent "$FAKE_FAIL_AFTER_WRITE_RATE") fail after writing; state at $GATEWAY_ADDR/fake-gateway/state)"
else
  gateway_note="gateway at $GATEWAY_ADDR"
fi

# Its own session (setsid(2), through Python: setsid(1) is not everywhere): only this script
# signals gunicorn, never the terminal's Ctrl-C. A background job of this script is no group
# leader, so the call succeeds and gunicorn replaces the Python process: $! is the master.
.venv/bin/python -c 'import os, sys; os.setsid(); os.execv(sys.argv[1], sys.argv[1:])' \
  .venv/bin/gunicorn project.wsgi --bind "127.0.0.1:${PORT}" --workers 2 --threads 4 \
  --access-logfile - --log-level warning &
web_pid=$!
pids+=("$web_pid")
.venv/bin/python manage.py qcluster &
pids+=($!)

cat <<INFO

  Tickets outbox is running.
    web app     http://127.0.0.1:${PORT}/
    admin       http://127.0.0.1:${PORT}/admin/   (user: ${ADMIN_USER}, password: ${ADMIN_PASSWORD})
    ${gateway_note}

  Try, in another shell in this directory:
    curl -i http://127.0.0.1:${PORT}/tickets-status -H 'Content-Type: application/json' \\
      -H 'Idempotency-Key: demo-1' -d '{"tickets": [{"ticket_id": "demo-1", "status": "confirmed",
      "customer_email": "ada@example.com", "price": {"amount": "50.00", "currency": "EUR"}}]}'
    source .venv/bin/activate
    export ENV_FILE=.env
    python manage.py simulate --url http://127.0.0.1:${PORT} --orders 20 --tickets-per-order 5 --cancel-rate 0.2
    python manage.py outbox_status

  Ctrl-C stops everything.
INFO

wait -n "${pids[@]}"
