"""The ledger as an HTTP service (Litestar on uvicorn): ``order-ledger serve``.

:func:`order_ledger.service.app.create_app` builds the ASGI app; ``auth`` holds
the bearer guard, :class:`~ledger.tokens.Principal` and :func:`auth.redact`;
``api`` the routes; ``errors`` the JSON error bodies. See docs/service.md.
"""
