"""A real local HTTP server that records the JSON bodies POSTed to it (a webhook)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRET_PATH = "/services/T0ROTATOR/B0HOOK/s3cretW3bhookT0ken"


@dataclass
class Webhook:
    """What the server received, and how it answers (``status``, after ``delay`` s)."""

    url: str = ""
    status: int = 200
    delay: float = 0.0
    posts: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.posts)

    def wait_for(self, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        """The posts once at least ``count`` arrived (raises after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            posts = self.received()
            if len(posts) >= count:
                return posts
            time.sleep(0.05)
        raise AssertionError(f"webhook got {len(self.received())} posts, expected {count}")


@contextmanager
def webhook_server(status: int = 200, delay: float = 0.0) -> Iterator[Webhook]:
    """Serve on a free port of 127.0.0.1; the URL's path looks like a Slack token."""
    hook = Webhook(status=status, delay=delay)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with hook.lock:
                hook.posts.append(json.loads(body))
                hook.paths.append(self.path)
            if hook.delay:
                time.sleep(hook.delay)
            self.send_response(hook.status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    hook.url = f"http://127.0.0.1:{server.server_address[1]}{SECRET_PATH}"
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
