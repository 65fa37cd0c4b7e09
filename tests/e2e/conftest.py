from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tests.support.cli import Cli


@pytest.fixture
def cli(aws_env: str, tmp_path: Path) -> Cli:
    """The rotator CLI (a real subprocess) with a fresh policy file and moto account."""
    cli = Cli(tmp=tmp_path, endpoint=aws_env)
    cli.write_policy()
    return cli


@pytest.fixture
def recorder(cli: Cli) -> Iterator[list[str]]:
    """An HTTP endpoint that records every request; the CLI's AWS calls go there."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.path)
            self.send_response(500)
            self.end_headers()

        do_GET = do_POST

        def log_message(self, *args: object) -> None:
            return

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    cli.env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield seen
    finally:
        server.shutdown()
