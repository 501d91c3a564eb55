"""Prometheus metrics: request latency by route, stream clients, event lag, queue drops."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUEST_LATENCY = Histogram(
    "fleet_http_request_seconds",
    "HTTP request latency by route template.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
STREAM_CLIENTS = Gauge("fleet_stream_clients", "Connected WebSocket and SSE clients.")
QUEUE_DROPS = Counter(
    "fleet_stream_queue_drops_total", "Clients cut off because their queue overflowed."
)
LAST_SENT_SEQ = Gauge("fleet_events_sent_seq", "Newest event sequence handed to clients.")
COMMITTED_SEQ = Gauge("fleet_events_committed_seq", "Newest committed event sequence.")
EVENT_LAG = Gauge("fleet_events_lag", "Newest committed sequence minus the newest sent.")
LISTENER_UP = Gauge("fleet_listener_connected", "1 while the LISTEN connection is up.")
SHED = Counter("fleet_http_shed_total", "Requests answered 503 because the process was full.")
RATE_LIMITED = Counter("fleet_http_rate_limited_total", "Requests answered 429.")
