"""Encryption in transit at the API: TLS termination by `orthovault serve`, and HSTS.

Behind a reverse proxy that terminates TLS (docs/deploy.md), leave the certificate unset;
the proxy then sets HSTS itself. When orthovault terminates TLS itself, only TLS 1.2 and
newer are accepted, with Python's default (modern, forward-secret) cipher suites.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request, Response

HSTS = "max-age=31536000; includeSubDomains"


async def hsts_middleware(request: Request,
                          call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    response = await call_next(request)
    if request.url.scheme == "https":
        response.headers["Strict-Transport-Security"] = HSTS
    return response


def server(app: Any, host: str, port: int, certfile: str | None,
           keyfile: str | None) -> Any:
    """A uvicorn server for ``app``; with a certificate and key it speaks TLS 1.2+ only."""
    import uvicorn

    if (certfile is None) != (keyfile is None):
        raise ValueError("TLS needs both ORTHOVAULT_TLS_CERTFILE and ORTHOVAULT_TLS_KEYFILE")
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                            ssl_certfile=certfile, ssl_keyfile=keyfile)
    config.load()
    if config.ssl is not None:
        config.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
    return uvicorn.Server(config)


def listening_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound before start-up so that a taken port fails at once
    (OSError) instead of after the projections and workers have started."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock
