"""The variable the benchmark sets on the clusters it starts: only they know its no-op and HTTP
handlers (`devtools/benchmark/handlers.py`, imported by `devtools/apps.py` when it is "1")."""

BENCHMARK_ENV = "OUTBOX_BENCHMARK_HANDLERS"
