"""The connection to a workspace: the login `outpost login` stored, HTTPS
calls with its token, and the workspace's refusals as exceptions.

The login is read as the CLI reads it: ``$OUTPOST_CONFIG``, else
``~/.outpost/config.json`` (JSON with ``url``, ``token`` and ``ca``, the PEM
of the workspace's CA), with ``OUTPOST_URL``, ``OUTPOST_TOKEN`` and
``OUTPOST_CA_FILE`` overriding its parts. The token is sent as
``Authorization: Bearer`` and appears in no message, repr or log.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import threading
import urllib.parse
from typing import IO, Any, Dict, Mapping, Optional, Tuple, Union

from . import _json
from .exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    UserErrorException,
)

__all__ = ["Login", "login_path", "load_login", "Connection", "Response", "quote"]

NOT_LOGGED_IN = ("not logged in to a workspace: run `outpost login --url URL --token TOKEN` "
                 "(or set OUTPOST_URL and OUTPOST_TOKEN)")


class Login:
    """Where a workspace answers and the credential to call it with."""

    def __init__(self, url: str, token: str, ca: Optional[str] = None) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.ca = ca or None

    def __repr__(self) -> str:
        # The token stays out of reprs, which end up in logs and tracebacks.
        return f"Login(url={self.url!r}, token=<hidden>, ca={'<PEM>' if self.ca else None})"


def login_path() -> str:
    """$OUTPOST_CONFIG, else ~/.outpost/config.json: where `outpost login` stores the login."""
    p = os.environ.get("OUTPOST_CONFIG")
    if p:
        return p
    return os.path.join(os.path.expanduser("~"), ".outpost", "config.json")


def load_login(url: Optional[str] = None, token: Optional[str] = None, ca_file: Optional[str] = None,
               ca: Optional[str] = None) -> Login:
    """The login: arguments first, then the environment, then the stored login."""
    stored: Dict[str, Any] = {}
    path = login_path()
    if not (url and token):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
        except OSError as e:
            raise UserErrorException(f"{path}: {e.strerror or e}") from None
        if data:
            try:
                stored = json.loads(data)
            except ValueError as e:
                raise UserErrorException(f"{path}: {e}") from None
            if not isinstance(stored, dict):
                raise UserErrorException(f"{path}: not a login (a JSON object with url, token and ca)")
    u = url or os.environ.get("OUTPOST_URL") or stored.get("url") or ""
    t = token or os.environ.get("OUTPOST_TOKEN") or stored.get("token") or ""
    pem = ca
    if pem is None:
        f = ca_file or os.environ.get("OUTPOST_CA_FILE")
        if f:
            try:
                with open(f, encoding="utf-8") as fh:
                    pem = fh.read()
            except OSError as e:
                what = "ca_file" if ca_file else "OUTPOST_CA_FILE"
                raise UserErrorException(f"{what}: {f}: {e.strerror or e}") from None
        elif not (url and token):
            pem = stored.get("ca")
    if not isinstance(u, str) or not isinstance(t, str) or not u or not t:
        raise UserErrorException(NOT_LOGGED_IN)
    return Login(u, t, pem if isinstance(pem, str) else None)


def quote(segment: str) -> str:
    """A path segment escaped for a URL, as Go's url.PathEscape does."""
    return urllib.parse.quote(segment, safe="!$&'()*+,;=:@~")


class Response:
    """An answer: status, headers (lower-case names) and body."""

    def __init__(self, status: int, reason: str, headers: Mapping[str, str], data: bytes) -> None:
        self.status = status
        self.reason = reason
        self.headers = dict(headers)
        self.data = data

    def json(self) -> Any:
        if not self.data:
            return None
        return json.loads(self.data)


def tls_context(ca_pem: Optional[str]) -> ssl.SSLContext:
    """A client context trusting ca_pem (else the machine's CAs), TLS 1.2 or newer."""
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_pem:
        try:
            ctx = ssl.create_default_context(cadata=ca_pem)
        except ssl.SSLError as e:
            raise UserErrorException(f"the workspace CA in the login holds no usable certificate: {e}") from None
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


_IDEMPOTENT = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}
_SAFE = {"GET", "HEAD", "OPTIONS"}

Body = Union[None, bytes, IO[bytes]]


class Connection:
    """Calls to one workspace with one login; thread-safe (calls take turns)."""

    def __init__(self, login: Login, timeout: float = 60.0) -> None:
        self.login = login
        self.timeout = timeout
        u = urllib.parse.urlsplit(login.url)
        if u.scheme not in ("https", "http") or not u.hostname:
            raise UserErrorException(f"workspace URL {login.url!r}: want https://HOST:PORT")
        self._scheme = u.scheme
        self._host = u.hostname
        self._port = u.port
        self._prefix = u.path.rstrip("/")
        self._ctx = tls_context(login.ca) if u.scheme == "https" else None
        self._conn: Optional[http.client.HTTPConnection] = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Connection({self.login.url!r})"

    def __del__(self) -> None:
        # The kept connection goes with its client, not with the process.
        conn = self.__dict__.get("_conn")
        if conn is not None:
            conn.close()

    @property
    def url(self) -> str:
        return self.login.url

    def _new_connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._scheme == "https":
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._ctx)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def close(self) -> None:
        """Closes the kept connection; the next call opens another."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def request(self, method: str, path: str, body: Body = None, *, content_type: Optional[str] = None,
                length: Optional[int] = None, timeout: Optional[float] = None) -> Response:
        """Sends a request; a non-2xx answer raises with the workspace's message."""
        resp = self.send(method, path, body, content_type=content_type, length=length, timeout=timeout)
        if resp.status // 100 != 2:
            raise status_error(method, path, resp)
        return resp

    def call(self, method: str, path: str, body: Any = None, *, timeout: Optional[float] = None) -> Any:
        """Sends body as JSON (when not None) and returns the decoded answer (None when empty)."""
        data = None
        ctype = None
        if body is not None:
            try:
                data = _json.dumps(body).encode("utf-8")
            except ValueError as e:
                raise UserErrorException(f"{method} {path}: the request body cannot be sent as JSON: {e}") from None
            ctype = "application/json"
        resp = self.request(method, path, data, content_type=ctype, timeout=timeout)
        try:
            return resp.json()
        except ValueError as e:
            raise HttpResponseError(f"{method} {path}: the workspace answered with no valid JSON: {e}",
                                    status_code=resp.status) from None

    def send(self, method: str, path: str, body: Body = None, *, content_type: Optional[str] = None,
             length: Optional[int] = None, timeout: Optional[float] = None) -> Response:
        """Sends a request and returns the answer whatever its status."""
        headers = {"Authorization": "Bearer " + self.login.token, "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/octet-stream"
            headers["Content-Length"] = str(len(body) if isinstance(body, (bytes, bytearray)) else (length or 0))
        elif method.upper() in ("POST", "PUT", "PATCH"):
            # An empty body said as such, as Go's client says it.
            headers["Content-Length"] = "0"
        target = self._prefix + path
        t = self.timeout if timeout is None else timeout
        with self._lock:
            # A POST goes on a connection of its own: if a kept connection
            # was closed by the workspace meanwhile, it could not be told
            # whether the request was carried out, and a POST is not repeated.
            reuse = method.upper() in _IDEMPOTENT and self._conn is not None
            for attempt in (1, 2):
                conn = self._conn if reuse else self._new_connection(t)
                if not reuse and self._conn is not None:
                    self._conn.close()
                self._conn = None
                conn.timeout = t
                if conn.sock is not None:
                    conn.sock.settimeout(t)
                sent = False
                try:
                    if hasattr(body, "seek") and attempt == 2:
                        body.seek(0)  # type: ignore[union-attr]
                    conn.putrequest(method, target, skip_accept_encoding=True)
                    for k, v in headers.items():
                        conn.putheader(k, v)
                    conn.endheaders()
                    sent = True
                    if body is not None:
                        if isinstance(body, (bytes, bytearray)):
                            conn.send(body)
                        else:
                            while True:
                                chunk = body.read(1 << 16)
                                if not chunk:
                                    break
                                conn.send(chunk)
                    r = conn.getresponse()
                    data = r.read()
                    resp = Response(r.status, r.reason, {k.lower(): v for k, v in r.getheaders()}, data)
                    if not r.will_close:
                        self._conn = conn
                    else:
                        conn.close()
                    return resp
                except ssl.SSLCertVerificationError as e:
                    conn.close()
                    raise ServiceRequestError(
                        f"workspace {self.url}: its certificate is not trusted ({e.verify_message}): "
                        "log in with the workspace's CA (outpost login --ca-file, or ca_file=)") from None
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                    conn.close()
                    if reuse and attempt == 1:
                        # The workspace closed the kept connection (idle):
                        # an idempotent request is sent again on a new one.
                        reuse = False
                        continue
                    raise self._unreachable(method, path, e, sent) from None
                except (OSError, http.client.HTTPException) as e:
                    conn.close()
                    raise self._unreachable(method, path, e, sent) from None
        raise AssertionError("unreachable")

    def _unreachable(self, method: str, path: str, e: BaseException, sent: bool) -> ServiceRequestError:
        why = str(e) or type(e).__name__
        if isinstance(e, socket.timeout):
            why = "timed out"
        if sent and method.upper() not in _SAFE:
            return ServiceRequestError(f"workspace {self.url}: {method} {path}: {why}; the request may have been applied",
                                       maybe_applied=True)
        return ServiceRequestError(f"workspace {self.url}: {why}")


def status_error(method: str, path: str, resp: Response) -> HttpResponseError:
    """The exception for a refusal: the workspace's message and code."""
    code: Optional[str] = None
    message = ""
    try:
        body = json.loads(resp.data) if resp.data else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        m = body.get("message")
        c = body.get("code")
        message = m if isinstance(m, str) else ""
        code = c if isinstance(c, str) else None
    if not message:
        message = f"{method} {path}: {resp.status} {resp.reason}".rstrip()
    cls = HttpResponseError
    if resp.status in (401, 403):
        cls = ClientAuthenticationError
    elif resp.status == 404:
        cls = ResourceNotFoundError
    elif resp.status == 409:
        cls = ResourceExistsError
    return cls(message, code=code, status_code=resp.status)


def workspace_path(resource_group: str, workspace_name: str) -> str:
    return f"/resourceGroups/{quote(resource_group)}/workspaces/{quote(workspace_name)}"


def find_workspace_config(path: Optional[str] = None, file_name: Optional[str] = None) -> Tuple[Dict[str, Any], str]:
    """The workspace's config.json, found as azureml finds it.

    path is the file, or the folder to start from (default: the current
    folder); each folder and then its parents are searched for
    ``config.json`` (or file_name) and ``.azureml/config.json``.
    """
    name = file_name or "config.json"
    candidates = []
    start = os.path.abspath(path or os.getcwd())
    if path and os.path.isfile(start):
        candidates.append(start)
    else:
        if path and not os.path.isdir(start):
            raise UserErrorException(f"workspace config {path}: no such file or folder")
        d = start
        while True:
            candidates.append(os.path.join(d, name))
            candidates.append(os.path.join(d, ".azureml", name))
            parent = os.path.dirname(d)
            if parent == d:
                break
            d = parent
    for c in candidates:
        if os.path.isfile(c):
            try:
                with open(c, encoding="utf-8") as f:
                    cfg = json.load(f)
            except (OSError, ValueError) as e:
                raise UserErrorException(f"workspace config {c}: {e}") from None
            if not isinstance(cfg, dict):
                raise UserErrorException(f"workspace config {c}: not a JSON object")
            return cfg, c
    raise UserErrorException(
        f"no workspace config found: looked for {name} and .azureml/{name} in {start} and its parents. "
        "Write one with the workspace's resource_group and workspace_name "
        '({"resource_group": "rg", "workspace_name": "ws"}), or pass them as arguments')


def workspace_from_config(cfg: Dict[str, Any], where: str) -> Tuple[Optional[str], str, str]:
    """subscription_id, resource_group and workspace_name of a config.json."""
    rg = cfg.get("resource_group")
    ws = cfg.get("workspace_name")
    sub = cfg.get("subscription_id")
    missing = [k for k, v in (("resource_group", rg), ("workspace_name", ws)) if not isinstance(v, str) or not v]
    if missing:
        raise UserErrorException(f"workspace config {where}: {' and '.join(missing)} missing")
    return (sub if isinstance(sub, str) else None), rg, ws  # type: ignore[return-value]
