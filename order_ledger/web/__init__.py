"""The browser page served by ``order-ledger serve`` at ``/``: Manage Orders with
time travel, live updates, metrics charts, reports and Manage Inventory.

Plug it into the service's app with ``web_route_handlers(WebConfig(...))``.
"""

from .routes import Principal, WebConfig, web_route_handlers

__all__ = ["Principal", "WebConfig", "web_route_handlers"]
