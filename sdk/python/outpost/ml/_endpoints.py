"""Online endpoints and deployments: show, list, keys, and invoke as
``outpost ml online-endpoint invoke`` does."""

from __future__ import annotations

import hmac
import http.client
import os
import socket
import ssl
import urllib.parse
from typing import Any, List, Optional, Union

from .._client import Connection, quote
from ..exceptions import HttpResponseError, ServiceRequestError, UserErrorException
from .entities import EndpointAuthKeys, EndpointAuthToken, OnlineDeployment, OnlineEndpoint

__all__ = ["OnlineEndpointOperations", "OnlineDeploymentOperations"]

# How long a scoring call may take, as the CLI allows it.
SCORING_TIMEOUT = 300.0


def _pem_certificates(pem: str) -> List[bytes]:
    """The DER of each CERTIFICATE block of pem."""
    ders = []
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    rest = pem
    while True:
        i = rest.find(begin)
        if i < 0:
            break
        j = rest.find(end, i)
        if j < 0:
            raise UserErrorException("the router's certificate, as its cluster reported it, is cut short")
        try:
            ders.append(ssl.PEM_cert_to_DER_cert(rest[i:j + len(end)] + "\n"))
        except ValueError as e:
            raise UserErrorException(f"the router's certificate, as its cluster reported it: {e}") from None
        rest = rest[j + len(end):]
    return ders


def _scoring_connection(uri: str, certificate_pem: str) -> http.client.HTTPConnection:
    """A connection to the router of a scoring URI.

    Over HTTPS the router is trusted when its certificate is the one its
    cluster reported (pinned: the router's name need not be in it, as a
    router reached on a node's address often is not), or when a CA this
    machine trusts issued it for the URI's host. The check is made before
    anything, the credential included, is sent.
    """
    u = urllib.parse.urlsplit(uri)
    host = u.hostname or ""
    if u.scheme == "http":
        return http.client.HTTPConnection(host, u.port, timeout=SCORING_TIMEOUT)
    if u.scheme != "https":
        raise UserErrorException(f"scoring URI {uri!r}: want http:// or https://")
    pinned = _pem_certificates(certificate_pem) if certificate_pem.strip() else []
    if certificate_pem.strip() and not pinned:
        raise UserErrorException("the router's certificate, as its cluster reported it, holds no certificate")
    if pinned:
        # First look at what the router presents, without trusting it yet.
        probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        probe.minimum_version = ssl.TLSVersion.TLSv1_2
        probe.check_hostname = False
        probe.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host, u.port, timeout=SCORING_TIMEOUT, context=probe)
        try:
            conn.connect()
            leaf = conn.sock.getpeercert(binary_form=True) if conn.sock else None
        except (OSError, ssl.SSLError) as e:
            conn.close()
            raise ServiceRequestError(f"calling {uri}: {e}") from None
        if leaf and any(hmac.compare_digest(leaf, p) for p in pinned):
            return conn
        conn.close()
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return http.client.HTTPSConnection(host, u.port, timeout=SCORING_TIMEOUT, context=ctx)


def score(uri: str, certificate_pem: str, credential: str, body: bytes, deployment: Optional[str] = None) -> bytes:
    """POSTs a request to a scoring URI; a non-2xx answer raises with its status and body."""
    u = urllib.parse.urlsplit(uri)
    target = u.path or "/"
    if u.query:
        target += "?" + u.query
    conn = _scoring_connection(uri, certificate_pem)
    headers = {"Content-Type": "application/json", "Authorization": "Bearer " + credential,
               "Content-Length": str(len(body))}
    if deployment:
        headers["azureml-model-deployment"] = deployment
    try:
        conn.request("POST", target, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
    except ssl.SSLCertVerificationError as e:
        raise ServiceRequestError(f"calling {uri}: the router's certificate is neither the one its cluster reported "
                                  f"nor trusted for {u.hostname}: {e.verify_message}") from None
    except (OSError, http.client.HTTPException) as e:
        why = "timed out" if isinstance(e, socket.timeout) else (str(e) or type(e).__name__)
        raise ServiceRequestError(f"calling {uri}: {why}") from None
    finally:
        conn.close()
    if resp.status // 100 != 2:
        text = data.decode("utf-8", errors="replace").strip()
        raise HttpResponseError(f"{uri} answered {resp.status} {resp.reason}: {text}", status_code=resp.status)
    return data


class OnlineEndpointOperations:
    """``ml_client.online_endpoints``: show, list, keys, invoke."""

    def __init__(self, conn: Connection, base: str) -> None:
        self._conn = conn
        self._base = base

    def _path(self, name: str) -> str:
        return f"{self._base}/onlineEndpoints/{quote(name)}"

    def get(self, name: str, **kwargs: Any) -> OnlineEndpoint:
        """The endpoint: scoring_uri, traffic, provisioning_state, ..."""
        return OnlineEndpoint(self._conn.call("GET", self._path(name)))

    def list(self, **kwargs: Any) -> List[OnlineEndpoint]:
        """The workspace's online endpoints."""
        return [OnlineEndpoint(e) for e in self._conn.call("GET", f"{self._base}/onlineEndpoints") or []]

    def get_keys(self, name: str) -> Union[EndpointAuthKeys, EndpointAuthToken]:
        """The endpoint's keys (key auth) or a fresh aml_token (aml_token auth). Secrets: do not print them."""
        e = self.get(name)
        if e.auth_mode == "aml_token":
            t = self._conn.call("POST", self._path(name) + "/token")
            return EndpointAuthToken(t.get("accessToken", ""), t.get("tokenType", ""), t.get("expiryTimeUtc", ""),
                                     t.get("refreshAfterTimeUtc", ""))
        k = self._conn.call("POST", self._path(name) + "/listKeys")
        return EndpointAuthKeys(k.get("primaryKey", ""), k.get("secondaryKey", ""))

    def invoke(self, endpoint_name: str, *, request_file: Optional[str] = None, deployment_name: Optional[str] = None,
               **kwargs: Any) -> str:
        """Sends request_file to the endpoint's scoring URI through its cluster's router; returns the answer.

        As `outpost ml online-endpoint invoke`: with the endpoint's primary key
        (or a fresh aml_token), to deployment_name when given (whatever the
        traffic split), trusting the router's certificate as its cluster
        reported it.
        """
        if not request_file:
            raise UserErrorException("request_file is required: the request body (JSON)")
        try:
            with open(os.fspath(request_file), "rb") as f:
                body = f.read()
        except OSError as e:
            raise UserErrorException(f"request_file: {request_file}: {e.strerror or e}") from None
        path = self._path(endpoint_name)
        e = self._conn.call("GET", path)
        uri = e.get("scoring_uri") or ""
        if not uri:
            raise HttpResponseError(f"online endpoint {endpoint_name} has no scoring URI yet: its cluster has reported "
                                    f"no inference router ({e.get('status_message') or '-'})")
        router = self._conn.call("GET", path + "/router") or {}
        if e.get("auth_mode") == "aml_token":
            credential = (self._conn.call("POST", path + "/token") or {}).get("accessToken", "")
        else:
            credential = (self._conn.call("POST", path + "/listKeys") or {}).get("primaryKey", "")
        answer = score(uri, router.get("certificatePEM") or "", credential, body, deployment_name)
        return answer.decode("utf-8", errors="replace")


class OnlineDeploymentOperations:
    """``ml_client.online_deployments``: show, list, logs."""

    def __init__(self, conn: Connection, base: str) -> None:
        self._conn = conn
        self._base = base

    def _path(self, endpoint_name: str, name: str = "") -> str:
        p = f"{self._base}/onlineEndpoints/{quote(endpoint_name)}/deployments"
        return p + "/" + quote(name) if name else p

    def get(self, name: str, endpoint_name: str, **kwargs: Any) -> OnlineDeployment:
        """The deployment and its state."""
        return OnlineDeployment(self._conn.call("GET", self._path(endpoint_name, name)))

    def list(self, endpoint_name: str, **kwargs: Any) -> List[OnlineDeployment]:
        """The endpoint's deployments."""
        return [OnlineDeployment(d) for d in self._conn.call("GET", self._path(endpoint_name)) or []]

    def get_logs(self, name: str, endpoint_name: str, lines: int, *, container_type: Optional[str] = None,
                 **kwargs: Any) -> str:
        """The last lines of an instance's scoring log (the instance written last)."""
        q = urllib.parse.urlencode({"lines": int(lines)})
        logs = self._conn.call("GET", f"{self._path(endpoint_name, name)}/logs?{q}") or {}
        return logs.get("content", "")
