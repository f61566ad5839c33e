"""The browser page served by ``order-ledger serve`` at ``/``: Manage Orders with
time travel, live updates, metrics charts, reports and Manage Inventory.

Plugged into the service's app by ``order_ledger.service.app.app_from_env``:
``create_app(config, extra_route_handlers=web_route_handlers())``.
"""

from .routes import WebConfig, web_route_handlers

__all__ = ["WebConfig", "web_route_handlers"]
