"""The runtime: what runs inside a qcluster to drain the outbox.

`passes` are the django-q2 tasks that keep relays running; a `relay` claims due tasks and hands
each to `execution`, which runs its handler and decides its outcome; `waiter` wakes a relay on
new work; `circuit` holds back calls to a destination that keeps failing; `shutdown` stops the
cluster in order. The runtime imports the engine's core (outbox.models, claim, outcomes, lease,
retry, registry, services), never the console.
"""
