"""MLflow model folders: the MLmodel file, and where a model URI points.

MLmodel is YAML. The standard library has no YAML, so this module writes
the plain subset MLflow's files use (mappings, lists, and strings quoted
as JSON, which YAML reads as its double-quoted strings) and reads back the
mappings of such a file, which is all loading a model needs.
"""

import json
import os
import re
from urllib.parse import unquote, urlparse

from mlflow import _tracking
from mlflow.exceptions import MlflowException

MLMODEL = "MLmodel"


def _scalar_text(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return json.dumps(v)
    return json.dumps(str(v))


def to_yaml(v, indent=0):
    """YAML block text of dicts, lists and scalars; an empty dict or list
    is written in flow style."""
    pad = " " * indent
    out = []
    if isinstance(v, dict):
        for k, x in v.items():
            if isinstance(x, (dict, list)) and x:
                out.append("%s%s:\n%s" % (pad, k, to_yaml(x, indent + 2)))
            else:
                out.append("%s%s: %s\n" % (pad, k, "{}" if x == {} else "[]" if x == [] else _scalar_text(x)))
    else:
        for x in v:
            if isinstance(x, (dict, list)) and x:
                # A mapping in a list starts on the dash's line.
                inner = to_yaml(x, indent + 2)
                out.append("%s- %s" % (pad, inner[indent + 2:]))
            else:
                out.append("%s- %s\n" % (pad, _scalar_text(x)))
    return "".join(out)


def _scalar(s):
    if s.startswith('"'):
        try:
            return json.loads(s)
        except ValueError:
            return s
    if s.startswith("'") and s.endswith("'") and len(s) >= 2:
        return s[1:-1].replace("''", "'")
    if s in ("null", "~"):
        return None
    if s in ("true", "false"):
        return s == "true"
    if s == "{}":
        return {}
    return s


_KEY = re.compile(r"^([A-Za-z0-9_.\-]+):(?:\s+(.*))?$")


def from_yaml(text):
    """The mappings of a YAML document of block mappings; list items and
    multi-line scalars are passed over."""
    root = {}
    stack = [(-1, root)]
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        m = _KEY.match(line)
        if m is None:
            continue
        while indent <= stack[-1][0]:
            stack.pop()
        parent = stack[-1][1]
        value = (m.group(2) or "").strip()
        if value == "":
            child = {}
            parent[m.group(1)] = child
            stack.append((indent, child))
        else:
            parent[m.group(1)] = _scalar(value)
    return root


def write(path, fields):
    with open(os.path.join(path, MLMODEL), "w", encoding="utf-8") as f:
        f.write(to_yaml(fields))


def local_path(model_uri):
    """The folder a model URI names: a local path, file://..., or
    runs:/<this job's run>/<artifact path> (the job's artifacts)."""
    uri = str(model_uri)
    if uri.startswith("runs:/"):
        run_id, _, path = uri[len("runs:/"):].partition("/")
        if run_id != _tracking._state.run_id:
            raise MlflowException(
                "%s: only this job's run (runs:/%s/...) is reachable from Outpost's mlflow; "
                "download another job's model with `outpost ml job download`" % (uri, _tracking._state.run_id)
            )
        return _tracking.artifact_dest(path, "model path")
    if uri.startswith("file:"):
        return unquote(urlparse(uri).path)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:/", uri):
        raise MlflowException("%s: Outpost's mlflow loads models from local folders, file:// and runs:/ URIs only" % uri)
    return uri


def read(path):
    """The MLmodel of the model folder at path."""
    f = os.path.join(path, MLMODEL)
    try:
        with open(f, encoding="utf-8") as fh:
            return from_yaml(fh.read())
    except FileNotFoundError:
        raise MlflowException("%s has no MLmodel file: it is not an MLflow model folder" % path, error_code="RESOURCE_DOES_NOT_EXIST") from None


def flavor(mlmodel, path, name):
    conf = (mlmodel.get("flavors") or {}).get(name)
    if not isinstance(conf, dict):
        have = ", ".join(sorted(mlmodel.get("flavors") or {})) or "none"
        raise MlflowException("the model at %s has no %s flavor (flavors: %s)" % (path, name, have), error_code="RESOURCE_DOES_NOT_EXIST")
    return conf
