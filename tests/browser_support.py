"""Headless Debian Chromium driven by Playwright, and a tiny static site on a loopback port.

Playwright never downloads a browser here: it launches the system's /usr/bin/chromium
(installed by .ci/run). The static site serves a folder (OHIF's dist/) with single-page-app
fallback to index.html, plus in-memory files (a generated app-config.js, probe pages).
"""

from __future__ import annotations

import functools
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Handler(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map,
                      ".wasm": "application/wasm", ".js": "text/javascript"}

    def __init__(self, *args: Any, files: dict[str, tuple[str, bytes]], **kwargs: Any) -> None:
        self.files = files
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in self.files:
            media_type, body = self.files[path]
            self.send_response(200)
            self.send_header("Content-Type", media_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if not Path(self.translate_path(path)).exists():
            self.path = "/index.html"  # a client-side route of the single-page app
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def static_site(port: int, root: Path | None, files: dict[str, tuple[str, bytes]]
                ) -> Iterator[None]:
    handler = functools.partial(_Handler, directory=str(root or "/nonexistent"), files=files)
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="static-site")
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless browser; each test opens its own context (no shared storage)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--use-gl=swiftshader",
                  "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"])
        try:
            yield browser
        finally:
            browser.close()
