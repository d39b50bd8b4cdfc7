"""A workspace for unit tests: an HTTP server on 127.0.0.1 whose routes the
tests set, which records every request."""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple

TOKEN = "unit-test-token-0123456789abcdefghijklmnopq"

# A route answers (status, body) where body is bytes, a JSON value, or None.
Handler = Callable[["Request"], Tuple[int, Any]]


class Request:
    def __init__(self, method: str, path: str, query: str, headers: Dict[str, str], body: bytes) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


class FakeWorkspace:
    """Routes are (method, regex of the path) -> handler; unmatched requests get a 404."""

    def __init__(self, tls: Optional[Tuple[str, str]] = None, check_token: bool = True) -> None:
        self.routes: List[Tuple[str, "re.Pattern[str]", Handler]] = []
        self.requests: List[Request] = []
        self.connections = 0
        fake = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                fake.connections += 1

            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path, _, query = self.path.partition("?")
                req = Request(self.command, path, query, {k.lower(): v for k, v in self.headers.items()}, body)
                fake.requests.append(req)
                if check_token and req.headers.get("authorization") != "Bearer " + TOKEN:
                    status, answer = 401, {"code": "Unauthorized", "message": "missing or wrong token"}
                else:
                    status, answer = 404, {"code": "NotFound", "message": f"no route {req.method} {req.path}"}
                    for method, rx, handler in fake.routes:
                        if method == req.method and rx.fullmatch(req.path):
                            status, answer = handler(req)
                            break
                if isinstance(answer, bytes):
                    data, ctype = answer, "application/octet-stream"
                elif answer is None:
                    data, ctype = b"", "application/json"
                else:
                    data, ctype = json.dumps(answer).encode(), "application/json"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = handle_any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        scheme = "http"
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls[0], tls[1])
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def route(self, method: str, path_regex: str, handler: Handler) -> None:
        self.routes.insert(0, (method, re.compile(path_regex), handler))

    def answer(self, method: str, path_regex: str, status: int, body: Any) -> None:
        self.route(method, path_regex, lambda _req: (status, body))

    def sent(self, method: str, path_regex: str) -> List[Request]:
        rx = re.compile(path_regex)
        return [r for r in self.requests if r.method == method and rx.fullmatch(r.path)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def make_cert(dir: str, name: str, san: str) -> Tuple[str, str]:
    """A self-signed certificate (a CA of itself) and its key, made with openssl."""
    cert, key = os.path.join(dir, name + ".crt"), os.path.join(dir, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=" + name, "-addext", "subjectAltName=" + san,
                    "-addext", "basicConstraints=critical,CA:TRUE"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


def have_openssl() -> bool:
    return shutil.which("openssl") is not None


class LoginEnv:
    """Points the SDK at a fake workspace through the environment, and back."""

    KEYS = ("OUTPOST_CONFIG", "OUTPOST_URL", "OUTPOST_TOKEN", "OUTPOST_CA_FILE")

    def __init__(self, url: str, ca_file: Optional[str] = None) -> None:
        self.saved = {k: os.environ.get(k) for k in self.KEYS}
        self.dir = tempfile.mkdtemp(prefix="outpost-sdk-test-")
        os.environ["OUTPOST_CONFIG"] = os.path.join(self.dir, "none.json")
        os.environ["OUTPOST_URL"] = url
        os.environ["OUTPOST_TOKEN"] = TOKEN
        if ca_file:
            os.environ["OUTPOST_CA_FILE"] = ca_file
        else:
            os.environ.pop("OUTPOST_CA_FILE", None)

    def restore(self) -> None:
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(self.dir, ignore_errors=True)
