"""One worker process of ``order-ledger serve --workers N``.

Each worker binds its own listening socket to the same address with
``SO_REUSEPORT``, so the kernel spreads new connections over the workers, and
runs uvicorn on it with the app built from the settings ``serve`` put in the
environment (:data:`order_ledger.service.app.CONFIG_VAR`).

    python -m order_ledger.service.worker HOST PORT LOG_LEVEL
"""

from __future__ import annotations

import socket
import sys


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP
    # (without it every response waits ~40 ms for the client's delayed ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def main(argv: list[str]) -> int:
    import uvicorn

    host, port, log_level = argv[0], int(argv[1]), argv[2]
    sock = listening_socket(host, port)
    config = uvicorn.Config("order_ledger.service.app:app_from_env", factory=True,
                            log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=10,
                            # uvicorn's C HTTP parser and event loop (httptools, uvloop)
                            # when installed, else h11 and asyncio's loop: under load
                            # the pair cuts the CPU per request by about a third
                            # (docs/benchmarks.md, "The HTTP service")
                            http="auto", loop="auto")
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
