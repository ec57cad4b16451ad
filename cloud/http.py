"""Local HTTP adapter: stdlib ThreadingHTTPServer -> API Gateway proxy events -> ApiApp.

No web framework: each request becomes the event API Gateway would send to the Lambda proxy
integration (method, path, headers, query string parameters, body), so the local server and
AWS run exactly the same handler code.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["ApiServer", "request_to_event"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024


def request_to_event(
    method: str, target: str, headers: Mapping[str, str], body: bytes = b""
) -> dict[str, Any]:
    """The API Gateway (REST, proxy) event for one HTTP request line, headers and body."""
    parts = urlsplit(target)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    return {
        "resource": "/{proxy+}",
        "httpMethod": method.upper(),
        "path": unquote(parts.path) or "/",
        "headers": dict(headers),
        "queryStringParameters": query or None,
        "pathParameters": {"proxy": unquote(parts.path).lstrip("/")},
        "body": body.decode("utf-8", "replace") if body else None,
        "isBase64Encoded": False,
        "requestContext": {"stage": "local"},
    }


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.send_error(413)
            return
        body = self.rfile.read(length) if length else b""
        event = request_to_event(self.command, self.path, dict(self.headers.items()), body)
        try:
            resp = self.server.app(event)
        except Exception:  # the HTTP boundary: a bug answers 500, never a dropped connection
            log.exception("unhandled error on %s %s", self.command, self.path)
            resp = {
                "statusCode": 500,
                "headers": {"Content-Type": "application/json"},
                "body": '{"error":{"code":"internal","message":"internal error"}}',
            }
        data = str(resp.get("body") or "").encode()
        self.send_response(int(resp["statusCode"]))
        for k, v in (resp.get("headers") or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = _serve
    do_POST = _serve
    do_PUT = _serve
    do_DELETE = _serve
    do_HEAD = _serve

    def __getattr__(self, name: str) -> Any:
        # any other method (PATCH, OPTIONS, TRACE, QUERY...) reaches the app, which answers
        # 405 with an Allow header (http.server alone would answer 501)
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    app: Callable[[Mapping[str, Any]], dict[str, Any]]


class ApiServer:
    """Serve ``app`` (an event -> response callable) on 127.0.0.1:``port`` in a thread."""

    def __init__(
        self,
        app: Callable[[Mapping[str, Any]], dict[str, Any]],
        port: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        self._server = _Server((host, port), _Handler)
        self._server.app = app
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="cloud-api",
            daemon=True,
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop serving and close the socket (waits at most 5 s for the loop to end)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
