"""Outpost's scoring server: what Azure ML's inference server (azmlinfsrv)
does in a deployment's instance, with the standard library only.

It imports the deployment's scoring script, calls its init() once, then its
run(raw_data) for every POST /score. `outpost score serve` writes this file
next to the deployment's files and runs it with the image's Python.

    GET  /              200 "Healthy" once init() has returned, 503 before:
                        one path for the liveness and the readiness probe
    POST /score         run(body as str); what it returns, JSON-encoded
    GET  /swagger.json  an OpenAPI 2 document of /score

Requests are served by threads, so that a probe or a swagger request is
answered while run() works; run() itself runs WORKER_COUNT calls at a time
(1 unless set), as azmlinfsrv's WORKER_COUNT sync workers do. Every request
is logged with its status and duration, never with its body. SIGTERM stops
taking connections, lets the requests in flight finish, and exits 0.
"""

import argparse
import importlib.util
import json
import os
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The exit code after the scoring script failed to load or init() raised;
# the termination message holds the traceback. `outpost score serve` knows
# it (scoring.ExitInitFailed).
EXIT_INIT_FAILED = 3

# The kubelet keeps 4 KiB of a termination message.
TERMINATION_LIMIT = 4000

_log_lock = threading.Lock()


def log(msg):
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%03dZ" % (int(now * 1000) % 1000)
    line = "%s %s\n" % (stamp, msg)
    with _log_lock:
        sys.stderr.write(line)
        sys.stderr.flush()


def write_termination(path, msg):
    """Leaves msg as the container's termination message (its end, when too
    long: a traceback's last lines say the most)."""
    if not path:
        return
    data = msg.encode("utf-8", errors="replace")
    if len(data) > TERMINATION_LIMIT:
        data = b"..." + data[-(TERMINATION_LIMIT - 3):]
        msg = data.decode("utf-8", errors="ignore")
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(msg)
    except OSError as e:
        log("could not write the termination message to %s: %s" % (path, e))


class ScriptError(Exception):
    """The scoring script cannot be used; the message says why."""


def load_script(path, code_dir):
    """Imports the scoring script as a module, its folder and the code
    folder on sys.path (the script's first), as azmlinfsrv does."""
    if not os.path.isfile(path):
        raise ScriptError("scoring script %s: no such file" % path)
    script_dir = os.path.dirname(os.path.abspath(path))
    for d in (code_dir, script_dir):
        if d and d not in sys.path:
            sys.path.insert(0, d)
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ScriptError("scoring script %s: Python cannot import it (want a .py file)" % path)
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs, as an import does: pickles and the
    # script's own imports of itself find it.
    sys.modules[name] = module
    spec.loader.exec_module(module)
    for fn in ("init", "run"):
        if not callable(getattr(module, fn, None)):
            raise ScriptError("scoring script %s defines no %s() function: a scoring script defines init() and run(raw_data)" % (path, fn))
    return module


def swagger_document(title):
    return {
        "swagger": "2.0",
        "info": {
            "title": title,
            "description": "API specification for the Azure Machine Learning service %s" % title,
            "version": "1.0",
        },
        "schemes": ["https", "http"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "securityDefinitions": {
            "Bearer": {
                "type": "apiKey",
                "name": "Authorization",
                "in": "header",
                "description": "For example: Bearer abc123",
            }
        },
        "paths": {
            "/": {
                "get": {
                    "operationId": "ServiceHealthCheck",
                    "description": "Simple health check endpoint to ensure the service is up at any given point.",
                    "responses": {
                        "200": {"description": "If service is up and running, this response will be returned with the content 'Healthy'", "schema": {"type": "string"}},
                        "default": {"description": "The service failed to execute due to an error.", "schema": {"$ref": "#/definitions/ErrorResponse"}},
                    },
                }
            },
            "/score": {
                "post": {
                    "operationId": "RunMLService",
                    "description": "Run web service's model and get the prediction output",
                    "security": [{"Bearer": []}],
                    "parameters": [
                        {
                            "name": "serviceInputPayload",
                            "in": "body",
                            "description": "The input payload for executing the real-time machine learning service.",
                            "required": True,
                            "schema": {"$ref": "#/definitions/ServiceInput"},
                        }
                    ],
                    "responses": {
                        "200": {"description": "The service processed the input correctly and provided a result prediction, if applicable.", "schema": {"$ref": "#/definitions/ServiceOutput"}},
                        "default": {"description": "The service failed to execute due to an error.", "schema": {"$ref": "#/definitions/ErrorResponse"}},
                    },
                }
            },
        },
        "definitions": {
            "ServiceInput": {"type": "object"},
            "ServiceOutput": {"type": "object"},
            "ErrorResponse": {"type": "object", "properties": {"message": {"type": "string"}}},
        },
    }


class State:
    """What the handler threads share."""

    def __init__(self, workers, max_body, swagger):
        self.ready = threading.Event()
        self.module = None
        self.draining = False
        self.signalled = None
        self.runs = threading.BoundedSemaphore(workers)
        self.max_body = max_body
        self.swagger = swagger
        self._cond = threading.Condition()
        self._inflight = 0

    def begin(self):
        with self._cond:
            self._inflight += 1

    def end(self):
        with self._cond:
            self._inflight -= 1
            if self._inflight == 0:
                self._cond.notify_all()

    def inflight(self):
        with self._cond:
            return self._inflight

    def wait_idle(self):
        with self._cond:
            while self._inflight > 0:
                self._cond.wait()


class BodyError(Exception):
    def __init__(self, status, msg):
        super().__init__(msg)
        self.status = status


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every answer has a Content-Length
    # The head and the body go out in two writes: with Nagle's algorithm the
    # body waited for the client's delayed ACK, ~40 ms on every answer.
    disable_nagle_algorithm = True

    def version_string(self):
        return "outpost-scoring"

    # Set from the command line: how long a connection may sit idle (and a
    # read or write may stall) before it is closed.
    timeout = 300

    def log_message(self, format, *args):
        # Each request gets one line of ours (finish_request); the base
        # class's lines would repeat it with the client's address.
        pass

    def handle_one_request(self):
        self._start = None
        self._status = None
        try:
            super().handle_one_request()
        finally:
            if self._start is not None:
                ms = (time.monotonic() - self._start) * 1000
                method = getattr(self, "command", None) or "-"
                path = (getattr(self, "path", None) or "-").split("?", 1)[0]
                headers = getattr(self, "headers", None)
                rid = headers.get("x-request-id") if headers else None
                extra = " request-id=%s" % rid if rid else ""
                log("%s %s %s %.1f ms%s" % (method, path, self._status or "-", ms, extra))
                self.server.state.end()

    def parse_request(self):
        # The request line has been read: from here on the request is in
        # flight, and SIGTERM waits for it.
        self._start = time.monotonic()
        self.server.state.begin()
        return super().parse_request()

    def send_response(self, code, message=None):
        self._status = int(code)
        super().send_response(code, message)

    def reply(self, status, body, ctype="text/plain; charset=utf-8", headers=()):
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        if self.server.state.draining or self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def read_body(self):
        """The request's body (Content-Length or chunked), at most max_body
        bytes."""
        limit = self.server.state.max_body
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self.read_chunked(limit)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise BodyError(HTTPStatus.BAD_REQUEST, "Content-Length %r: want a number of bytes" % length)
        if n > limit:
            # The body is not read: the connection cannot carry another
            # request.
            self.close_connection = True
            raise BodyError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "the body has %d bytes, more than the %d this server takes" % (n, limit))
        data = self.rfile.read(n)
        if len(data) != n:
            self.close_connection = True
            raise BodyError(HTTPStatus.BAD_REQUEST, "the body ended after %d of its %d bytes" % (len(data), n))
        return data

    def read_chunked(self, limit):
        parts, total = [], 0
        while True:
            line = self.rfile.readline(1026)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise BodyError(HTTPStatus.BAD_REQUEST, "a chunked body with a bad chunk size")
            if size == 0:
                # Trailers, up to the empty line.
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            total += size
            if total > limit:
                self.close_connection = True
                raise BodyError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "the body has more than the %d bytes this server takes" % limit)
            chunk = self.rfile.read(size)
            if len(chunk) != size:
                self.close_connection = True
                raise BodyError(HTTPStatus.BAD_REQUEST, "a chunked body that ends inside a chunk")
            parts.append(chunk)
            self.rfile.readline(3)  # the CRLF after the chunk

    def route(self):
        state = self.server.state
        try:
            body = self.read_body()
        except BodyError as e:
            self.reply(e.status, str(e) + "\n")
            return
        path = self.path.split("?", 1)[0]
        method = self.command
        if path == "/":
            if method not in ("GET", "HEAD"):
                self.reply(HTTPStatus.METHOD_NOT_ALLOWED, "%s / is not served: GET / is the health check\n" % method, headers=[("Allow", "GET, HEAD")])
            elif state.ready.is_set():
                self.reply(HTTPStatus.OK, "Healthy")
            else:
                self.reply(HTTPStatus.SERVICE_UNAVAILABLE, "init() has not returned yet\n")
        elif path == "/score":
            if method != "POST":
                self.reply(HTTPStatus.METHOD_NOT_ALLOWED, "%s /score is not served: POST the request to /score\n" % method, headers=[("Allow", "POST")])
            else:
                self.score(body)
        elif path == "/swagger.json":
            if method not in ("GET", "HEAD"):
                self.reply(HTTPStatus.METHOD_NOT_ALLOWED, "%s /swagger.json is not served: GET it\n" % method, headers=[("Allow", "GET, HEAD")])
            else:
                self.reply(HTTPStatus.OK, state.swagger, "application/json")
        else:
            self.reply(HTTPStatus.NOT_FOUND, "no route %s %s: this server answers GET /, POST /score and GET /swagger.json\n" % (method, path))

    def score(self, body):
        state = self.server.state
        if not state.ready.is_set():
            self.reply(HTTPStatus.SERVICE_UNAVAILABLE, "init() has not returned yet\n")
            return
        # As Flask's get_data(as_text=True), which azmlinfsrv hands to run():
        # bytes that are not UTF-8 become U+FFFD rather than a refusal.
        raw_data = body.decode("utf-8", errors="replace")
        with state.runs:
            try:
                result = state.module.run(raw_data)
            except BaseException as e:  # noqa: BLE001 - sys.exit() in run() is the request's failure too
                log("run() raised:\n" + traceback.format_exc().rstrip())
                self.reply(HTTPStatus.INTERNAL_SERVER_ERROR, exception_message(e) + "\n")
                return
        try:
            out = json.dumps(result)
        except (TypeError, ValueError) as e:
            log("run() returned a value that is not JSON-serializable: %s" % e)
            self.reply(HTTPStatus.INTERNAL_SERVER_ERROR, "run() returned a value that is not JSON-serializable: %s\n" % e)
            return
        self.reply(HTTPStatus.OK, out, "application/json")

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = route


def exception_message(e):
    """The exception as Python's last traceback line shows it:
    "ValueError: bad input"."""
    return "".join(traceback.format_exception_only(type(e), e)).strip()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (BrokenPipeError, ConnectionResetError)):
            # The client went away (the router gave up on the request): no
            # traceback for that.
            log("the client closed the connection: %s" % type(exc).__name__)
            return
        log("serving a connection failed:\n" + traceback.format_exc().rstrip())

    def server_bind(self):
        # HTTPServer's would look the host's name up (socket.getfqdn),
        # which can hang on a pod's DNS; nothing here uses it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = host, port


def parse_args(argv):
    p = argparse.ArgumentParser(description="Serve a scoring script's init() and run() over HTTP, as azmlinfsrv does.")
    p.add_argument("--script", required=True, help="the scoring script (score.py)")
    p.add_argument("--code-dir", default="", help="the code folder (the working directory; on sys.path)")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=5001, help="0: any free port (the log says which)")
    p.add_argument("--name", default="ML service", help="the service's name in swagger.json")
    p.add_argument("--termination-log", default="/dev/termination-log")
    p.add_argument("--max-body-bytes", type=int, default=100 << 20)
    p.add_argument("--idle-timeout", type=float, default=300, help="seconds a connection may sit idle")
    return p.parse_args(argv)


def worker_count():
    v = os.environ.get("WORKER_COUNT", "").strip()
    if not v:
        return 1
    try:
        n = int(v)
    except ValueError:
        n = 0
    if n < 1:
        raise ScriptError("WORKER_COUNT=%r: want a whole number, 1 or more (how many run() calls may run at once)" % v)
    return n


def main(argv):
    args = parse_args(argv)
    # This file's own folder is not the user's: no imports from it.
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or ".") == here:
        del sys.path[0]

    try:
        workers = worker_count()
    except ScriptError as e:
        log(str(e))
        write_termination(args.termination_log, str(e))
        return EXIT_INIT_FAILED
    state = State(workers, args.max_body_bytes, json.dumps(swagger_document(args.name), indent=2).encode())
    Handler.timeout = args.idle_timeout
    Server.address_family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    try:
        server = Server((args.host, args.port), Handler)
    except OSError as e:
        msg = "listening on %s:%d: %s" % (args.host, args.port, e)
        log(msg)
        write_termination(args.termination_log, msg)
        return 1
    server.state = state

    stop = threading.Event()

    def on_signal(signum, frame):
        state.signalled = signum
        if not state.ready.is_set():
            # Nothing is served yet: leave init() where it is.
            raise SystemExit(128 + signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    serving = threading.Thread(target=server.serve_forever, name="serve", daemon=True)
    serving.start()
    host, port = server.server_address[:2]
    log("listening on %s:%d (run() calls at once: %d)" % (host, port, workers))

    try:
        module = load_script(args.script, args.code_dir)
        log("calling init()")
        started = time.monotonic()
        module.init()
    except SystemExit as e:
        if state.signalled is not None:
            log("stopped by signal %d before init() returned" % state.signalled)
            return 128 + state.signalled
        tb = traceback.format_exc().rstrip()
        log("init() exited (sys.exit(%r)):\n%s" % (e.code, tb))
        write_termination(args.termination_log, "init() exited with sys.exit(%r):\n%s" % (e.code, tb))
        return EXIT_INIT_FAILED
    except ScriptError as e:
        log(str(e))
        write_termination(args.termination_log, str(e))
        return EXIT_INIT_FAILED
    except BaseException:  # noqa: BLE001 - whatever init() raised is the deployment's failure
        tb = traceback.format_exc().rstrip()
        log("init() failed:\n" + tb)
        write_termination(args.termination_log, tb)
        return EXIT_INIT_FAILED
    state.module = module
    state.ready.set()
    log("init() returned in %.1f s: ready" % (time.monotonic() - started))

    while not stop.wait(1):
        pass
    state.draining = True
    log("signal %d: no new connections; finishing %d request(s) in flight" % (state.signalled, state.inflight()))
    server.shutdown()
    server.server_close()
    state.wait_idle()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
