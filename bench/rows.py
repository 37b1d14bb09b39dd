"""Names shared by the run and the report: the rows, and the production settings of the headline runs."""

from __future__ import annotations

HASH_SAMPLES = 5  # cost-12 hashes timed in the bench process for bcrypt's limit (the median)

# Row names (the endpoint table's order is the order they are measured in).
CEILING = "ceiling"
CEILING_WITH_EXT = "bare Sanic + sanic-ext (reference)"
LOG_CEILING = "logging ceiling: bare Sanic + the service's access line"
DB_GETCODE = "DB ceiling: getcode lookup"
DB_LIST = "DB ceiling: 100-row list page"
DB_REGISTER = "DB ceiling: registration statements"
DB_UPDATE = "DB ceiling: update_code statements"
HOT = "getcode (cache hot)"
HOT_LOGGED = "getcode (cache hot, access log on)"
REGISTER = "/referals/register"
REGISTER_LIMITED = "/referals/register, code with max_uses"
LIST = "/referals/list (100-row page)"
UPDATE = "/refer/update_code"
AUTH = "/user/auth"
NOCACHE = "getcode (cache disabled)"
# The webhook rows (`bench/webhooks.py`), measured side by side in their own rounds.
WEBHOOKS_OFF_REGISTER = "/referals/register, no WEBHOOK_URLS"
WEBHOOKS_ON_REGISTER = "/referals/register, WEBHOOK_URLS (receiver answers 204)"
WEBHOOKS_OFF_HOT = "getcode (cache hot), no WEBHOOK_URLS"
WEBHOOKS_ON_HOT = "getcode (cache hot), WEBHOOK_URLS (receiver answers 204)"
WEBHOOKS_HANG_HOT = "getcode (cache hot), WEBHOOK_URLS (receiver hangs)"
DB_CEILING_OF = {NOCACHE: DB_GETCODE, LIST: DB_LIST, REGISTER: DB_REGISTER, UPDATE: DB_UPDATE}

# Cached getcode with the features switched: all three off, then each alone on top of that. (Each alone,
# not each one off the production settings: with rate limiting on, every row would also carry the cost of
# limits' moving window, which grows with the hits of the last minute and so differs from server to server.)
ALL_OFF = "rate limiting, metrics and access log off"
ONLY_RATE_LIMIT = "all off but rate limiting"
ONLY_METRICS = "all off but metrics"
ONLY_ACCESS_LOG = "all off but the access log"

# Rate limits far above what the benchmark sends from its one address (about 40,000 requests a second
# at most: 2.4 million a minute), so that every limit is checked on every request and none refuses one.
UNREACHED_LIMIT = "100000000/minute"
PRODUCTION = {
    "RATE_LIMIT": "on",
    "RATE_LIMIT_IP": UNREACHED_LIMIT,
    "RATE_LIMIT_USER": UNREACHED_LIMIT,
    "RATE_LIMIT_LOGIN": UNREACHED_LIMIT,
    "HASH_CONCURRENCY_PER_IP": "64",  # above the login rows' 8 connections, all from 127.0.0.1
    "HASH_CONCURRENCY_PER_NETWORK": "64",
    "HASH_QUEUE_MAX": "256",
    "METRICS": "on",
    "ACCESS_LOG": "off",
    "LOG_FORMAT": "text",
}
