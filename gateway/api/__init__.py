"""The HTTP API: alerts (REST and a live feed), the security desk page, /metrics, /healthz."""

from gateway.api.app import AlertSource, AlertSubscription, desk_connections, make_app, serve
from gateway.api.bounds import HttpLimits

__all__ = ["AlertSource", "AlertSubscription", "HttpLimits", "desk_connections", "make_app",
           "serve"]
