"""Jobs: loading a job file, submitting it as ``outpost ml job create`` does,
following its log as ``outpost ml job stream`` does."""

from __future__ import annotations

import base64
import codecs
import os
import re
import secrets
import sys
import time
import urllib.parse
from typing import IO, Any, Dict, Iterable, List, Optional, Union

from .. import _yaml
from .._client import Connection, quote
from ..exceptions import (
    HttpResponseError,
    JobException,
    OutpostError,
    ServiceRequestError,
    UserErrorException,
    ValidationException,
    YAMLError,
)
from . import _artifacts
from .entities import Job

__all__ = ["load_job", "JobOperations"]

# Azure ML's limit on a job's code snapshot.
MAX_CODE_BYTES = 300 << 20

_REMOTE = re.compile(r"(?i:azureml:|[a-z][a-z0-9+.-]*://)")
_FIELD_PATH = re.compile(r"[A-Za-z_$][A-Za-z0-9_$.\[\]-]*")


def load_job(source: Union[str, os.PathLike], *, relative_origin: Optional[str] = None,
             params_override: Optional[List[Dict[str, Any]]] = None, **kwargs: Any) -> Job:
    """Reads a job YAML file (Azure ML CLI v2 command job).

    Local paths in it (code, inputs, environment files) are taken relative to
    the file's folder (or relative_origin) and uploaded when the job is
    submitted. params_override is a list of ``{"field": value}`` (dotted
    fields reach inside: ``{"inputs.epochs": 5}``), applied in order.
    """
    path = os.fspath(source)
    if not os.path.exists(path):
        raise ValidationException(f"{path}: no such file")
    doc = _yaml.load_document(path)
    if doc.value is None:
        raise ValidationException(f"{path}: the file is empty: it must hold a mapping of fields (field: value)")
    if not isinstance(doc.value, dict):
        raise ValidationException(f"{path}: line 1: the document must be a mapping of fields (field: value), "
                                  f"not {_kind(doc.value)}")
    value = doc.value
    for override in params_override or []:
        for field, v in override.items():
            _set_field(value, field, v, path)
    job = Job(value)
    object.__setattr__(job, "_base_path", os.path.abspath(relative_origin or os.path.dirname(path) or "."))
    object.__setattr__(job, "_source", doc)
    return job


def _kind(v: Any) -> str:
    if isinstance(v, list):
        return "a list"
    if v is None:
        return "null"
    return f"the value {v!r}"


def _set_field(doc: Dict[str, Any], field: str, value: Any, file: str) -> None:
    parts = field.split(".")
    node = doc
    for p in parts[:-1]:
        nxt = node.get(p)
        if nxt is None:
            nxt = {}
            node[p] = nxt
        if not isinstance(nxt, dict):
            raise ValidationException(f"{file}: params_override {field}: {p} is not a mapping")
        node = nxt
    node[parts[-1]] = value


# --- names -----------------------------------------------------------------------

# Names of jobs submitted without one, made as the CLI (and Azure ML) makes them.
_ADJECTIVES = (
    "amber", "bold", "brave", "bright", "busy", "calm", "careful", "cheerful", "clever", "cool",
    "crisp", "curious", "dapper", "eager", "epic", "fancy", "festive", "frank", "gentle", "happy",
    "honest", "humble", "jolly", "keen", "kind", "lively", "loyal", "lucky", "mellow", "merry",
    "modest", "neat", "nice", "nifty", "patient", "plucky", "polite", "proud", "quick", "quiet",
    "quirky", "sharp", "shiny", "silly", "sleepy", "smart", "sunny", "swift", "tender", "tidy",
    "upbeat", "vivid", "warm", "wise", "witty", "zealous")
_NOUNS = (
    "apple", "arch", "bag", "basket", "bean", "bell", "boat", "book", "brush", "button",
    "cactus", "camera", "candle", "carrot", "cloud", "coat", "comet", "cup", "drum", "feather",
    "fig", "flag", "garden", "glove", "hat", "helmet", "island", "jelly", "kettle", "kite",
    "lamp", "leaf", "lemon", "lime", "map", "melon", "mirror", "moon", "night", "onion",
    "orange", "owl", "pan", "pear", "pencil", "pepper", "piano", "pillow", "plum", "pot",
    "river", "rocket", "roof", "rose", "seed", "shoe", "spoon", "star", "stone", "sun",
    "table", "tiger", "tomato", "tree", "tulip", "vase", "wall", "whale", "yacht", "zebra")


def generate_name() -> str:
    """``<adjective>_<noun>_<10 lowercase letters and digits>``, e.g. ``quirky_hat_7ql5cqq9ff``."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    tail = "".join(secrets.choice(alphabet) for _ in range(10))
    return f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NOUNS)}_{tail}"


# --- resolving local paths ---------------------------------------------------------

class _Upload:
    def __init__(self, field: str, local: str, is_dir: bool, path: str, files: int, size: int,
                 ignore: bool = False, max_bytes: int = 0) -> None:
        self.field = field
        self.local = local
        self.is_dir = is_dir
        self.path = path
        self.files = files
        self.size = size
        self.ignore = ignore
        self.max_bytes = max_bytes


class _FieldError(Exception):
    """A problem at a field of the document (a dotted path), for its line."""

    def __init__(self, path: str, msg: str) -> None:
        super().__init__(f"{path}: {msg}" if path else msg)
        self.path = path
        self.msg = msg


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _local(p: str) -> Optional[str]:
    """p without az's optional file: prefix when it is a local path, else None."""
    if _REMOTE.match(p):
        return None
    return p[len("file:"):] if p.startswith("file:") else p


def _abs(base: str, p: str) -> str:
    return os.path.abspath(p if os.path.isabs(p) else os.path.join(base, p))


class _Resolver:
    """Replaces a job's local paths by the datastore URIs they will be uploaded to, and
    inlines environment and conda files, reading files but sending nothing."""

    def __init__(self) -> None:
        self.uploads: List[_Upload] = []
        self.errors: List[Exception] = []

    def job(self, doc: Dict[str, Any], base: str) -> None:
        code = doc.get("code")
        if isinstance(code, str):
            p = _local(code)
            if p is not None:
                try:
                    doc["code"] = self.code(_abs(base, p))
                except UserErrorException as e:
                    self.errors.append(_FieldError("code", e.message))
        inputs = doc.get("inputs")
        if isinstance(inputs, dict):
            for name in sorted(inputs, key=os.fsencode):
                value = inputs[name]
                if isinstance(value, dict):
                    self.data(value, base, "inputs." + name)
        env = doc.get("environment")
        if isinstance(env, str) and env.startswith("file:"):
            try:
                doc["environment"] = self.environment_file(_abs(base, env[len("file:"):]))
            except UserErrorException as e:
                self.errors.append(_FieldError("environment", e.message))
        elif isinstance(env, dict):
            self.environment(env, base, "environment")

    def code(self, folder: str) -> str:
        if not os.path.exists(folder):
            raise UserErrorException(f"{folder} does not exist (a relative path is taken from the folder of the YAML file)")
        if not os.path.isdir(folder):
            raise UserErrorException(f"{folder} is a file; code is a folder, uploaded whole as the job's working "
                                     "directory: give the folder that holds the file and name the file in command")
        try:
            u = self.folder("code", folder, ignore=True, max_bytes=MAX_CODE_BYTES)
        except UserErrorException as e:
            if "more than the limit" in e.message:
                raise UserErrorException(e.message + "\n(300 MiB is Azure ML's limit on a job's code snapshot)") from None
            raise
        return _artifacts.uri(_artifacts.DATASTORE, u.path)

    def data(self, inp: Dict[str, Any], base: str, field: str) -> None:
        p = inp.get("path")
        if not isinstance(p, str):
            return
        local = _local(p)
        if local is None:
            return
        typ = inp.get("type") if isinstance(inp.get("type"), str) and inp.get("type") else "uri_folder"
        typ = typ.lower()
        path = _abs(base, local)
        path_field = _join(field, "path")
        if not os.path.exists(path):
            self.errors.append(_FieldError(path_field, f"{path} does not exist (a relative path is taken from the "
                                                       "folder of the YAML file)"))
            return
        is_dir = os.path.isdir(path)
        if is_dir and typ == "uri_file":
            self.errors.append(_FieldError(path_field, f"{path} is a folder, but type is uri_file: give a file, or use "
                                                       "type uri_folder"))
            return
        if not is_dir and typ in ("uri_folder", "mltable"):
            self.errors.append(_FieldError(path_field, f"{path} is a file, but type is {typ}, which wants a folder: "
                                                       "give a folder, or use type uri_file"))
            return
        try:
            if is_dir:
                if typ == "mltable" and not os.path.exists(os.path.join(path, "MLTable")):
                    raise UserErrorException(f"{path} holds no MLTable file, which type mltable needs")
                u = self.folder(path_field, path)
            else:
                u = self.file(path_field, path)
        except UserErrorException as e:
            self.errors.append(_FieldError(path_field, e.message))
            return
        inp["path"] = _artifacts.uri(_artifacts.DATASTORE, u.path)

    def environment_file(self, file: str) -> Dict[str, Any]:
        env = _load_yaml_file(file)
        if not isinstance(env, dict):
            raise UserErrorException(f"{file}: an environment file is a mapping of fields (image, conda_file, build, ...)")
        for k in ("name", "version", "$schema"):
            env.pop(k, None)
        before = len(self.errors)
        self.environment(env, os.path.dirname(file), "")
        if len(self.errors) > before:
            problems = self.errors[before:]
            del self.errors[before:]
            raise UserErrorException(f"{file}: " + "\n".join(str(p) for p in problems))
        return env

    def environment(self, env: Dict[str, Any], base: str, field: str) -> None:
        conda = env.get("conda_file")
        if isinstance(conda, str):
            p = _local(conda)
            if p is not None:
                file = _abs(base, p)
                try:
                    v = _load_yaml_file(file)
                except UserErrorException as e:
                    self.errors.append(_FieldError(_join(field, "conda_file"), e.message))
                else:
                    if isinstance(v, dict):
                        env["conda_file"] = v
                    else:
                        self.errors.append(_FieldError(_join(field, "conda_file"), f"{file} is not a conda environment "
                                                       "file (a mapping with name, channels, dependencies)"))
        build = env.get("build")
        if isinstance(build, dict) and isinstance(build.get("path"), str):
            p = _local(build["path"])
            if p is not None:
                path_field = _join(field, "build.path")
                folder = _abs(base, p)
                if not os.path.exists(folder):
                    self.errors.append(_FieldError(path_field, f"stat {folder}: no such file or directory"))
                elif not os.path.isdir(folder):
                    self.errors.append(_FieldError(path_field, f"{folder} is a file; the build context is a folder "
                                                               "(holding the Dockerfile)"))
                else:
                    try:
                        u = self.folder(path_field, folder, ignore=True)
                    except UserErrorException as e:
                        self.errors.append(_FieldError(path_field, e.message))
                    else:
                        build["path"] = _artifacts.uri(_artifacts.DATASTORE, u.path)

    def folder(self, field: str, folder: str, ignore: bool = False, max_bytes: int = 0) -> _Upload:
        files = _artifacts.scan(folder, ignore, max_bytes)
        digest = _artifacts.tree_digest(files)
        u = _Upload(field, folder, True, f"{_artifacts.UPLOAD_ROOT}{digest}/{os.path.basename(folder)}/", len(files),
                    sum(f.size for f in files), ignore, max_bytes)
        self._add(u)
        return u

    def file(self, field: str, file: str) -> _Upload:
        st = os.stat(file)
        name = os.path.basename(file)
        f = _artifacts.LocalFile(name, file, st.st_size, 0o755 if st.st_mode & 0o111 else 0o644,
                                 _artifacts.hash_file(file))
        digest = _artifacts.tree_digest([f])
        u = _Upload(field, file, False, f"{_artifacts.UPLOAD_ROOT}{digest}/{name}", 1, st.st_size)
        self._add(u)
        return u

    def _add(self, u: _Upload) -> None:
        # The same folder named twice is uploaded once.
        if all(o.path != u.path for o in self.uploads):
            self.uploads.append(u)

    def upload(self, ds: _artifacts.Datastore, progress: IO[str]) -> None:
        for u in self.uploads:
            if ds.exists(_artifacts.DATASTORE, u.path):
                progress.write(f"{u.field} unchanged, reusing its upload\n")
                continue
            progress.write(f"Uploading {u.field} ({u.files} {'file' if u.files == 1 else 'files'}, {_size(u.size)})\n")
            progress.flush()
            try:
                if u.is_dir:
                    ds.upload_dir(u.local, _artifacts.DATASTORE, u.path, u.ignore, u.max_bytes)
                else:
                    ds.upload_file(u.local, _artifacts.DATASTORE, u.path)
            except OutpostError as e:
                e.message = f"uploading {u.field} ({u.local}): {e.message}"
                e.args = (e.message,)
                raise


def _size(n: int) -> str:
    if n < 1 << 10:
        return f"{n} B"
    if n < 1 << 20:
        return f"{n / (1 << 10):.1f} KiB"
    if n < 1 << 30:
        return f"{n / (1 << 20):.1f} MiB"
    return f"{n / (1 << 30):.1f} GiB"


def _load_yaml_file(file: str) -> Any:
    if not os.path.exists(file):
        raise UserErrorException(f"{file}: no such file (a relative path is taken from the folder of the YAML file naming it)")
    return _yaml.load_file(file)


def _explain(source: Optional[_yaml.Document], file: Optional[str], problems: Iterable[Exception]) -> str:
    """Each problem, with the file and the line of the field it is about."""
    lines = []
    for p in problems:
        text = str(p)
        if isinstance(p, _FieldError) and source is not None:
            n = source.line(p.path)
            if n:
                text = f"{source.file}, line {n}: {text}"
        lines.append(text)
    msg = "\n".join(lines)
    if file and not msg.startswith(file):
        msg = f"{file}: {msg}"
    return msg


def _explain_lines(source: Optional[_yaml.Document], msg: str) -> str:
    """Puts the file and line before each line of a workspace message that starts with a field of the file."""
    if source is None:
        return msg
    out = []
    for line in msg.split("\n"):
        field, sep, _ = line.partition(": ")
        if sep and _FIELD_PATH.fullmatch(field):
            n = source.line(field)
            if n:
                line = f"{source.file}, line {n}: {line}"
        out.append(line)
    return "\n".join(out)


# --- following a job's log ---------------------------------------------------------

_RANK = re.compile(r"std_log_process_(\d+)\.txt")


class _LogPrinter:
    """Writes log chunks as they come: a header when a file first appears and, once the
    job has several processes, each line prefixed by its rank, whole lines only."""

    def __init__(self, out: IO[str], processes: int) -> None:
        self.out = out
        self.multi = processes > 1
        self.offsets: Dict[str, int] = {}
        self.partial: Dict[str, str] = {}
        self.decoders: Dict[str, Any] = {}
        self.files: List[str] = []
        self.ranks = 0
        self.mid_line = False

    def from_param(self) -> str:
        return ",".join(f"{f}:{self.offsets[f]}" for f in sorted(self.offsets, key=os.fsencode))

    def _prefixed(self, file: str) -> bool:
        return self.multi and (bool(_RANK.fullmatch(file.rsplit("/", 1)[-1])) or len(self.files) > 1)

    @staticmethod
    def _prefix(file: str) -> str:
        base = file.rsplit("/", 1)[-1]
        m = _RANK.fullmatch(base)
        return f"[rank {m.group(1)}] " if m else f"[{base}] "

    def write(self, file: str, offset: int, data: bytes) -> None:
        known = self.offsets.get(file)
        seen = known is not None
        known = known or 0
        skip = known - offset
        if skip > 0:
            # Bytes printed already (a retried request).
            if skip >= len(data):
                return
            data = data[skip:]
        if not seen:
            self.files.append(file)
            if _RANK.fullmatch(file.rsplit("/", 1)[-1]):
                self.ranks += 1
            if self.ranks > 1:
                # More processes than the job's document says: tell ranks apart from now on.
                self.multi = True
            title = "Streaming " + file
            self._out(self._newline() + title + "\n" + "=" * len(title) + "\n")
            self.decoders[file] = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.offsets[file] = max(known, offset) + len(data)
        text = self.decoders[file].decode(data)
        if not self._prefixed(file):
            self._out(text)
            return
        buf = self.partial.get(file, "") + text
        pre = self._prefix(file)
        lines = buf.split("\n")
        self.partial[file] = lines.pop()
        self._out("".join(pre + ln + "\n" for ln in lines))

    def _newline(self) -> str:
        return "\n" if self.mid_line else ""

    def _out(self, s: str) -> None:
        if s:
            self.mid_line = not s.endswith("\n")
            self.out.write(s)
            self.out.flush()

    def flush(self) -> None:
        for f in self.files:
            rest = self.partial.get(f, "") + self.decoders[f].decode(b"", final=True)
            if rest:
                self.partial[f] = ""
                if self._prefixed(f):
                    self._out(self._prefix(f) + rest + "\n")
                else:
                    self._out(rest)


def _processes(job: Dict[str, Any]) -> int:
    n = 1
    res = job.get("resources") or {}
    if isinstance(res.get("instance_count"), int) and res["instance_count"] > 0:
        n = res["instance_count"]
    d = job.get("distribution")
    if not isinstance(d, dict):
        return n
    if str(d.get("type", "")).lower() == "tensorflow":
        ps = d.get("parameter_server_count") or 0
        if d.get("worker_count"):
            return d["worker_count"] + ps
        return n + ps
    return n * max(1, d.get("process_count_per_instance") or 0)


def _transient(e: Exception) -> bool:
    """A failure worth reconnecting after: the network, or the workspace (or a proxy) briefly unable."""
    if isinstance(e, ServiceRequestError):
        return True
    if isinstance(e, HttpResponseError):
        code = e.status_code or 0
        return code >= 500 or code in (408, 429)
    return False


# How long one logs request waits for news (the workspace allows up to 25 s).
LOG_WAIT = 20
# How long stream keeps reconnecting to a workspace it cannot reach, and
# the first wait before reconnecting (it doubles up to 10 s).
MAX_OUTAGE = 15 * 60
RECONNECT_DELAY = 1.0


class JobOperations:
    """``ml_client.jobs``: submit, show, list, cancel and stream command jobs."""

    def __init__(self, conn: Connection, base: str) -> None:
        self._conn = conn
        self._base = base

    def _path(self, name: str) -> str:
        return f"{self._base}/jobs/{quote(name)}"

    def create_or_update(self, job: Job, *, description: Optional[str] = None, compute: Optional[str] = None,
                         tags: Optional[Dict[str, str]] = None, experiment_name: Optional[str] = None,
                         skip_validation: bool = False, **kwargs: Any) -> Job:
        """Uploads what the job needs (code, local inputs) and submits it; returns the job as the workspace has it.

        The document sent is the one `outpost ml job create -f FILE` sends for
        the same file: local paths replaced by the datastore URIs they were
        uploaded to (unchanged content is not uploaded again), environment
        and conda files inlined, ``experiment_name`` defaulting to the name of
        the current folder, and a generated name when the job has none.
        """
        if not isinstance(job, Job):
            raise ValidationException("create_or_update takes a Job (load_job('job.yml'))")
        doc = job._to_dict()
        for field, value in (("description", description), ("compute", compute), ("tags", tags),
                             ("experiment_name", experiment_name)):
            if value is not None:
                doc[field] = value
        source: Optional[_yaml.Document] = job._source
        file = source.file if source is not None else None
        if "experiment_name" not in doc:
            # As az: a job without an experiment is filed under the name of
            # the folder it was submitted from.
            doc["experiment_name"] = os.path.basename(os.getcwd())
        t = doc.get("type")
        if isinstance(t, str) and t.lower() in ("sweep", "pipeline"):
            raise ValidationException(_explain(source, file, [_FieldError(
                "type", f"{t} jobs are not supported yet: only command jobs run (type: command)")]))
        r = _Resolver()
        base = job._base_path or os.getcwd()
        try:
            r.job(doc, base)
        except YAMLError:
            raise
        except UserErrorException as e:
            raise ValidationException(_explain(source, file, [e])) from None
        if r.errors:
            raise ValidationException(_explain(source, file, r.errors))
        if not doc.get("name"):
            doc["name"] = generate_name()
        progress = sys.stderr
        r.upload(_artifacts.Datastore(self._conn, self._base, progress), progress)
        try:
            data = self._conn.call("PUT", self._path(str(doc["name"])), _sorted_keys(doc))
        except HttpResponseError as e:
            # The workspace names the fields it refuses, one problem a line:
            # point each at its line of the file.
            msg = _explain_lines(source, e.message)
            raise type(e)(msg, code=e.code, status_code=e.status_code) from None
        return Job(data)

    def get(self, name: str) -> Job:
        """The job as the workspace has it now (status, status_message, ...)."""
        return Job(self._conn.call("GET", self._path(name)))

    def list(self, *, parent_job_name: Optional[str] = None, **kwargs: Any) -> List[Job]:
        """The workspace's jobs, newest first (a parent job has no children: Outpost runs command jobs only)."""
        if parent_job_name:
            self._conn.call("GET", self._path(parent_job_name))
            return []
        return [Job(j) for j in self._conn.call("GET", f"{self._base}/jobs") or []]

    def begin_cancel(self, name: str, **kwargs: Any) -> "_Done":
        """Cancels a job: its pods are ended. The cancellation is recorded when this returns."""
        return _Done(Job(self._conn.call("POST", self._path(name) + "/cancel")))

    def stream(self, name: str) -> None:
        """Prints the job's log as it comes until the job ends, as `outpost ml job stream` does.

        The log goes to stdout, state changes to stderr. Returns when the job
        Completed; raises JobException with the reason when it Failed or was
        Canceled. Ctrl-C stops following (the job goes on).
        """
        out, err = sys.stdout, sys.stderr
        job = self._conn.call("GET", self._path(name))
        studio = ((job.get("services") or {}).get("Studio") or {}).get("endpoint", "")
        out.write(f"RunId: {name}\nWeb View: {studio}\n")
        out.flush()
        lp = _LogPrinter(out, _processes(job))
        last_state = ""
        logs: Dict[str, Any] = {}
        outage: Optional[float] = None
        delay = RECONNECT_DELAY
        try:
            while True:
                q = urllib.parse.urlencode([("from", lp.from_param()), ("wait", str(LOG_WAIT))] if lp.offsets
                                           else [("wait", str(LOG_WAIT))])
                try:
                    logs = self._conn.call("GET", f"{self._path(name)}/logs?{q}", timeout=LOG_WAIT + 40) or {}
                except (ServiceRequestError, HttpResponseError) as e:
                    if not _transient(e):
                        raise
                    if outage is None:
                        outage = time.monotonic()
                        err.write(f"lost the workspace ({e.message}); reconnecting ...\n")
                    elif time.monotonic() - outage > MAX_OUTAGE:
                        raise ServiceRequestError(f"could not reach the workspace for 15m0s, giving up streaming "
                                                  f"(job {name} goes on): {e.message}") from None
                    time.sleep(delay)
                    delay = min(2 * delay, 10.0)
                    continue
                if outage is not None:
                    err.write("reconnected\n")
                    outage, delay = None, RECONNECT_DELAY
                status, msg = logs.get("status", ""), logs.get("status_message", "")
                state = f"[{status}] {msg}" if msg else f"[{status}]"
                if state != last_state:
                    err.write(state + "\n")
                    err.flush()
                    last_state = state
                for c in logs.get("chunks") or []:
                    lp.write(c.get("file", ""), int(c.get("offset", 0)), base64.b64decode(c.get("data") or ""))
                if logs.get("done"):
                    break
        except KeyboardInterrupt:
            lp.flush()
            raise
        lp.flush()
        out.write(f"{lp._newline()}\nExecution Summary\n=================\nRunId: {name}\nWeb View: {studio}\n")
        out.flush()
        status, msg = logs.get("status", ""), logs.get("status_message", "")
        why = f": {msg}" if msg else ""
        if status == "Completed":
            return
        if status == "Failed":
            raise JobException(f"job {name} failed{why}", status=status)
        if status == "Canceled":
            raise JobException(f"job {name} was canceled{why}", status=status)
        raise JobException(f"job {name} ended in state {status}{why}", status=status)


def _sorted_keys(v: Any) -> Any:
    """v with every mapping's keys in order, as the CLI sends free-form parts (a conda file)."""
    if isinstance(v, dict):
        return {k: _sorted_keys(v[k]) for k in sorted(v)}
    if isinstance(v, list):
        return [_sorted_keys(x) for x in v]
    return v


class _Done:
    """The result of an operation that completed when it was started (azure.ai.ml's pollers)."""

    def __init__(self, result: Any) -> None:
        self._result = result

    def result(self, timeout: Optional[float] = None) -> Any:
        return self._result

    def done(self) -> bool:
        return True

    def wait(self, timeout: Optional[float] = None) -> None:
        return None

