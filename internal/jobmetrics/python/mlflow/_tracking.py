"""Runs, metrics, params, tags and artifacts of Outpost's stand-in mlflow.

A job is one run, whose id is the job's name (AZUREML_RUN_ID), as in an
Azure ML job. Every metric value, param and tag becomes one JSON line of
the file OUTPOST_METRICS_FILE names, one file per process of the job:

    {"type": "metric", "key": "loss", "value": 0.25, "step": 3, "timestamp": 1700000000000}
    {"type": "param", "key": "lr", "value": "0.01", "timestamp": 1700000000000}
    {"type": "tag", "key": "stage", "value": "dev", "timestamp": 1700000000000}

A metric value JSON has no number for is written as "NaN", "Infinity" or
"-Infinity". Each call's lines go to the file in one write, so that the
wrapper, which reads them as they come, never sees half a call.
Artifacts (log_artifact, sklearn.log_model, ...) go to the job's
./outputs, OUTPOST_ARTIFACTS_DIR, which the wrapper uploads as the job's
artifacts when the command ends.
"""

import json
import math
import numbers
import os
import posixpath
import shutil
import sys
import threading
import time
import uuid

from mlflow.exceptions import MlflowException

# VERSION is mlflow.__version__: the MLflow API this package follows.
VERSION = "2.0.0+outpost"

ENV_FILE = "OUTPOST_METRICS_FILE"
ENV_LIMIT = "OUTPOST_METRICS_LIMIT"
ENV_ARTIFACTS = "OUTPOST_ARTIFACTS_DIR"

# MLflow's own bounds.
MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
_KEY_PUNCTUATION = "_-. /:"

_RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")

_lock = threading.RLock()


def _new_lock():
    # A child forked while another thread held the lock (a data loader's
    # workers, say) would wait for it forever.
    global _lock
    _lock = threading.RLock()


os.register_at_fork(after_in_child=_new_lock)


def _warn(msg):
    print("mlflow (Outpost): " + msg, file=sys.stderr, flush=True)


_warned = set()


def _warn_once(what, msg):
    with _lock:
        if what in _warned:
            return
        _warned.add(what)
    _warn(msg)


def _now_ms():
    return int(time.time() * 1000)


class _Sink:
    """Appends records to OUTPOST_METRICS_FILE, up to OUTPOST_METRICS_LIMIT
    of them (the most the workspace keeps of a job)."""

    def __init__(self):
        self.path = None
        self.fd = None
        self.written = 0

    def write(self, records):
        path = os.environ.get(ENV_FILE, "")
        if not path:
            _warn_once("no file", "%s is not set (this is not an Outpost job): metrics, params and tags are not recorded" % ENV_FILE)
            return
        limit = os.environ.get(ENV_LIMIT, "")
        if limit.isdigit() and self.written + len(records) > int(limit):
            records = records[: max(0, int(limit) - self.written)]
            _warn_once("full", "Outpost keeps at most %s metric values, params and tags of a job: what is logged from now on is not recorded" % limit)
        if not records:
            return
        data = "".join(json.dumps(r, separators=(",", ":"), allow_nan=False) + "\n" for r in records).encode("ascii")
        try:
            if self.fd is None or self.path != path:
                os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
                # O_APPEND: processes that share the file (a script's
                # subprocesses inherit its environment) never write over
                # each other's lines.
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                if self.fd is not None:
                    os.close(self.fd)
                self.fd, self.path = fd, path
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as e:
            raise MlflowException("recording to %s: %s" % (path, e)) from e
        self.written += len(records)


_sink = _Sink()


def _check_key(kind, key):
    if not isinstance(key, str):
        raise MlflowException("%s key %r: want a string" % (kind, key))
    if not key or len(key) > MAX_KEY:
        raise MlflowException("%s key %r: want 1 to %d characters" % (kind, key, MAX_KEY))
    for c in key:
        if not (c.isalnum() or c in _KEY_PUNCTUATION):
            raise MlflowException("%s key %r: %r is not allowed; use letters, digits, spaces and _ - . / :" % (kind, key, c))
    # Keys may become file names: they must not be paths that name another.
    if key.startswith("/") or posixpath.normpath(key) != key or ".." in key.split("/") or key == ".":
        raise MlflowException("%s key %r: a key may hold '/' between names, but no empty, '.' or '..' part and no leading '/'" % (kind, key))
    return key


def _whole(kind, key, what, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise MlflowException("%s %r: %s %r: want a whole number" % (kind, key, what, v))
    v = int(v)
    if not -(2**63) <= v < 2**63:
        raise MlflowException("%s %r: %s %d: out of the 64-bit range" % (kind, key, what, v))
    return v


def _metric_value(key, value):
    """The value as MLflow keeps it: a float (True is 1.0; NaN and the
    infinities are allowed)."""
    err = MlflowException(
        "metric %r: value %r is not a number; a metric's value is a 64-bit float "
        "(an int, a float, a bool, a numpy number; call .item() on a one-element tensor or array)" % (key, value)
    )
    if not isinstance(value, numbers.Number):
        raise err
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        raise err from None


def _json_value(v):
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def _text(kind, key, value, most):
    s = str(value)
    if len(s) > most:
        raise MlflowException("%s %r: value of %d characters; at most %d are allowed" % (kind, key, len(s), most))
    return s


class RunInfo:
    def __init__(self, run_id, experiment_id, run_name):
        self.run_id = run_id
        self.run_uuid = run_id
        self.experiment_id = experiment_id
        self.run_name = run_name
        self.status = "RUNNING"
        self.start_time = _now_ms()
        self.end_time = None
        self.lifecycle_stage = "active"
        self.artifact_uri = artifacts_dir()
        self.user_id = os.environ.get("USER", "")

    def __repr__(self):
        return "<RunInfo: run_id=%r, experiment_id=%r, status=%r>" % (self.run_id, self.experiment_id, self.status)


class RunData:
    def __init__(self, metrics=None, params=None, tags=None):
        self.metrics = dict(metrics or {})
        self.params = dict(params or {})
        self.tags = dict(tags or {})

    def __repr__(self):
        return "<RunData: metrics=%r, params=%r, tags=%r>" % (self.metrics, self.params, self.tags)


class Run:
    def __init__(self, info, data):
        self.info = info
        self.data = data

    def __repr__(self):
        return "<Run: info=%r, data=%r>" % (self.info, self.data)


class ActiveRun(Run):
    """The run start_run returns; as a context manager it ends the run on
    leaving, FAILED when an exception leaves with it."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        end_run("FINISHED" if exc_type is None else "FAILED")
        return False


class Experiment:
    def __init__(self, experiment_id, name):
        self.experiment_id = experiment_id
        self.name = name
        self.lifecycle_stage = "active"
        self.artifact_location = artifacts_dir()
        self.tags = {}

    def __repr__(self):
        return "<Experiment: experiment_id=%r, name=%r>" % (self.experiment_id, self.name)


class _State:
    def __init__(self):
        self.run_id = os.environ.get("AZUREML_RUN_ID") or uuid.uuid4().hex
        self.experiment = os.environ.get("AZUREML_EXPERIMENT_NAME") or "Default"
        self.active = None
        self.info = None
        # latest[key] = (step, timestamp, value): MLflow's "latest" value
        # of a metric is the one of the highest step, then timestamp.
        self.latest = {}
        self.params = {}
        self.tags = {}
        self.tracking_uri = None


_state = _State()


def _data():
    return RunData({k: v[2] for k, v in _state.latest.items()}, _state.params, _state.tags)


def _check_run_id(run_id):
    if run_id is not None and run_id != _state.run_id:
        raise MlflowException(
            "run %r is not this job's run (%s): Outpost's mlflow logs to the job's own run only" % (run_id, _state.run_id),
            error_code="RESOURCE_DOES_NOT_EXIST",
        )


def _run():
    """The active run, started as mlflow starts one when a script logs
    without start_run."""
    with _lock:
        if _state.active is None:
            start_run()
        return _state.active


def start_run(run_id=None, experiment_id=None, run_name=None, nested=False, parent_run_id=None, tags=None, description=None, log_system_metrics=None):
    """Start the job's run (it is the job: run_id is AZUREML_RUN_ID).
    experiment_id is accepted and has no effect: the job's experiment is
    its experiment_name. Nested runs are not supported."""
    _check_run_id(run_id)
    with _lock:
        if _state.active is not None:
            if nested:
                raise MlflowException(
                    "nested runs are not supported by Outpost's mlflow: a job is one run "
                    "(log each trial's metrics under keys of its own, or submit a job per trial)"
                )
            raise MlflowException(
                "run %s is already active: call mlflow.end_run() before starting another "
                "(nested runs are not supported by Outpost's mlflow)" % _state.run_id
            )
        if log_system_metrics:
            _warn_once("system metrics", "log_system_metrics: system metrics are not logged by Outpost's mlflow")
        if _state.info is None:
            _state.info = RunInfo(_state.run_id, _state.experiment, run_name or _state.run_id)
        else:
            _state.info.status, _state.info.end_time = "RUNNING", None
        _state.active = ActiveRun(_state.info, _data())
        extra = dict(tags or {})
        if run_name is not None:
            _state.info.run_name = run_name
            extra["mlflow.runName"] = run_name
        if description is not None:
            extra["mlflow.note.content"] = description
        if extra:
            set_tags(extra)
        return _state.active


def end_run(status="FINISHED"):
    """End the active run, if any; logging again starts it again."""
    if status not in _RUN_STATUSES:
        raise MlflowException("end_run: status %r: want one of %s" % (status, ", ".join(_RUN_STATUSES)))
    with _lock:
        if _state.active is None:
            return
        _state.info.status, _state.info.end_time = status, _now_ms()
        _state.active = None


def active_run():
    with _lock:
        if _state.active is not None:
            _state.active.data = _data()
        return _state.active


def get_run(run_id):
    _check_run_id(run_id)
    with _lock:
        info = _state.info or RunInfo(_state.run_id, _state.experiment, _state.run_id)
        return Run(info, _data())


def log_metric(key, value, step=None, synchronous=None, timestamp=None, run_id=None, model_id=None, dataset=None):
    """Log one value of a metric. synchronous, model_id and dataset are
    accepted and have no effect: every call is written when it returns."""
    log_metrics({key: value}, step=step, run_id=run_id, timestamp=timestamp)


def log_metrics(metrics, step=None, synchronous=None, run_id=None, timestamp=None, model_id=None, dataset=None):
    """Log several metrics at one step; all are checked before any is
    written."""
    _check_run_id(run_id)
    step = 0 if step is None else _whole("metric", "step", "step", step)
    ts = _now_ms() if timestamp is None else _whole("metric", "timestamp", "timestamp", timestamp)
    records = []
    for key, value in dict(metrics).items():
        v = _metric_value(_check_key("metric", key), value)
        records.append({"type": "metric", "key": key, "value": _json_value(v), "step": step, "timestamp": ts})
    with _lock:
        _run()
        _sink.write(records)
        for r in records:
            v = float(r["value"]) if isinstance(r["value"], str) else r["value"]
            cur = _state.latest.get(r["key"])
            if cur is None or (step, ts) >= cur[:2]:
                _state.latest[r["key"]] = (step, ts, v)


def log_param(key, value, synchronous=None):
    """Log a param; returns its value. A param keeps its first value, as
    in MLflow: logging another raises."""
    log_params({key: value})
    return value


def log_params(params, synchronous=None, run_id=None):
    _check_run_id(run_id)
    checked = {}
    for key, value in dict(params).items():
        checked[_check_key("param", key)] = _text("param", key, value, MAX_PARAM_VALUE)
    with _lock:
        _run()
        for key, value in checked.items():
            old = _state.params.get(key)
            if old is not None and old != value:
                raise MlflowException(
                    "param %r was logged already with value %r: a param's value cannot change (it is now %r)" % (key, old, value)
                )
        ts = _now_ms()
        new = [{"type": "param", "key": k, "value": v, "timestamp": ts} for k, v in checked.items() if k not in _state.params]
        _sink.write(new)
        _state.params.update(checked)


def set_tag(key, value, synchronous=None):
    set_tags({key: value})


def set_tags(tags, synchronous=None):
    checked = {}
    for key, value in dict(tags).items():
        checked[_check_key("tag", key)] = _text("tag", key, value, MAX_TAG_VALUE)
    with _lock:
        _run()
        ts = _now_ms()
        _sink.write([{"type": "tag", "key": k, "value": v, "timestamp": ts} for k, v in checked.items()])
        _state.tags.update(checked)


def set_experiment(experiment_name=None, experiment_id=None):
    """Accepted, with no effect: a job's run belongs to the job's
    experiment (its experiment_name), which is returned."""
    return Experiment(_state.experiment, _state.experiment)


def get_experiment_by_name(name):
    if name != _state.experiment:
        return None
    return Experiment(_state.experiment, _state.experiment)


def set_tracking_uri(uri):
    """Accepted, with no effect: records always go to the job's metrics
    file."""
    _state.tracking_uri = str(uri)


def get_tracking_uri():
    """What set_tracking_uri set, else MLFLOW_TRACKING_URI, else the
    job's metrics file."""
    return _state.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "file://" + os.environ.get(ENV_FILE, "")


def autolog_unsupported(name, disable=False):
    if not disable:
        _warn_once(name, "%s: autologging is not supported by Outpost's mlflow; nothing is logged automatically (log with mlflow.log_metric, log_param and set_tag)" % name)


def autolog(*args, disable=False, **kwargs):
    """Accepted: says once on stderr that nothing is logged automatically."""
    autolog_unsupported("mlflow.autolog", disable)


def artifacts_dir():
    """The job's ./outputs, uploaded as its artifacts when the command
    ends."""
    return os.environ.get(ENV_ARTIFACTS) or os.path.abspath("outputs")


def artifact_dest(path, what):
    """The folder or file under the artifacts that path names: a relative
    path that stays inside them."""
    if path is None or path == "":
        return artifacts_dir()
    if not isinstance(path, str) or path.startswith("/") or "\\" in path or ".." in path.split("/"):
        raise MlflowException("%s %r: want a relative path inside the job's artifacts, without '..'" % (what, path))
    return os.path.join(artifacts_dir(), posixpath.normpath(path))


def log_artifact(local_path, artifact_path=None, run_id=None):
    """Copy a file (or a folder) into the job's artifacts, under
    artifact_path."""
    _check_run_id(run_id)
    dest_dir = artifact_dest(artifact_path, "artifact_path")
    _run()
    dest = os.path.join(dest_dir, os.path.basename(os.path.normpath(local_path)))
    if os.path.isdir(local_path):
        _copy_tree(local_path, dest)
        return
    os.makedirs(dest_dir, exist_ok=True)
    try:
        shutil.copy2(local_path, dest)
    except shutil.SameFileError:
        pass  # written in the artifacts already


def log_artifacts(local_dir, artifact_path=None, run_id=None):
    """Copy what a folder holds into the job's artifacts, under
    artifact_path."""
    _check_run_id(run_id)
    dest = artifact_dest(artifact_path, "artifact_path")
    _run()
    _copy_tree(local_dir, dest)


def _copy_tree(src, dest):
    if os.path.realpath(src) == os.path.realpath(dest):
        return  # written in the artifacts already
    shutil.copytree(src, dest, dirs_exist_ok=True)


def log_text(text, artifact_file, run_id=None):
    """Write text to a file of the job's artifacts."""
    _check_run_id(run_id)
    path = artifact_dest(artifact_file, "artifact_file")
    _run()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def log_dict(dictionary, artifact_file, run_id=None):
    """Write a dict to a file of the job's artifacts as JSON (which YAML
    readers read too, whatever the file's extension)."""
    log_text(json.dumps(dictionary, indent=2, default=str) + "\n", artifact_file, run_id=run_id)
