"""`make bench`: throughput, latency, scale and memory of the service next to a bare-Sanic ceiling."""
