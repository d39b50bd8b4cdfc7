"""mlflow.sklearn: scikit-learn models saved, logged and loaded in
MLflow's model layout (MLmodel with the python_function and sklearn
flavors, model.pkl, conda.yaml, python_env.yaml, requirements.txt), so
that what a job saves registers as an mlflow_model and loads with the
real mlflow too. scikit-learn itself is imported only to read its
version; any picklable model saves.
"""

import datetime
import os
import pickle
import platform
import shutil
import tempfile
import uuid

from mlflow import _model, _tracking
from mlflow.exceptions import MlflowException

FLAVOR_NAME = "sklearn"
SERIALIZATION_FORMAT_PICKLE = "pickle"
SERIALIZATION_FORMAT_CLOUDPICKLE = "cloudpickle"
SUPPORTED_SERIALIZATION_FORMATS = [SERIALIZATION_FORMAT_PICKLE, SERIALIZATION_FORMAT_CLOUDPICKLE]

_MODEL_FILE = "model.pkl"


def autolog(*args, disable=False, **kwargs):
    """Accepted: says once on stderr that nothing is logged automatically."""
    _tracking.autolog_unsupported("mlflow.sklearn.autolog", disable)


def _version(module):
    try:
        return __import__(module).__version__
    except (ImportError, AttributeError):
        return None


def _requirements(serialization_format, pip_requirements, extra_pip_requirements):
    """requirements.txt: mlflow, and the versions of what loading needs."""
    if pip_requirements is not None:
        reqs = [str(r) for r in pip_requirements]
    else:
        reqs = ["mlflow"]
        needs = [("sklearn", "scikit-learn")]
        if serialization_format == SERIALIZATION_FORMAT_CLOUDPICKLE:
            needs.append(("cloudpickle", "cloudpickle"))
        for module, dist in needs:
            v = _version(module)
            if v:
                reqs.append("%s==%s" % (dist, v))
    return reqs + [str(r) for r in (extra_pip_requirements or [])]


def _save(sk_model, path, serialization_format, pip_requirements, extra_pip_requirements, conda_env, code_paths, pyfunc_predict_fn, metadata, artifact_path):
    if serialization_format is None:
        serialization_format = SERIALIZATION_FORMAT_PICKLE
    if serialization_format not in SUPPORTED_SERIALIZATION_FORMATS:
        raise MlflowException("serialization_format %r: want one of %s" % (serialization_format, ", ".join(SUPPORTED_SERIALIZATION_FORMATS)))
    if code_paths:
        raise MlflowException("code_paths is not supported by Outpost's mlflow: keep the model's code importable where it is loaded")
    # pickle unless cloudpickle (MLflow's default) is asked for by name:
    # a pickle loads wherever scikit-learn is.
    pickler = pickle
    if serialization_format == SERIALIZATION_FORMAT_CLOUDPICKLE:
        try:
            import cloudpickle as pickler
        except ImportError:
            raise MlflowException("serialization_format 'cloudpickle': cloudpickle is not installed (leave serialization_format out for pickle)") from None
    path = os.path.abspath(path)
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise MlflowException("path %r already exists and is not empty: save_model writes a new model folder" % path, error_code="RESOURCE_ALREADY_EXISTS")
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, _MODEL_FILE), "wb") as f:
        pickler.dump(sk_model, f)

    python = platform.python_version()
    reqs = _requirements(serialization_format, pip_requirements, extra_pip_requirements)
    with open(os.path.join(path, "requirements.txt"), "w", encoding="utf-8") as f:
        f.write("".join(r + "\n" for r in reqs))
    with open(os.path.join(path, "python_env.yaml"), "w", encoding="utf-8") as f:
        f.write(_model.to_yaml({"python": python, "build_dependencies": ["pip", "setuptools", "wheel"], "dependencies": ["-r requirements.txt"]}))
    if isinstance(conda_env, str):
        shutil.copyfile(conda_env, os.path.join(path, "conda.yaml"))
    else:
        env = conda_env or {"channels": ["conda-forge"], "dependencies": ["python=" + python, "pip", {"pip": reqs}], "name": "mlflow-env"}
        with open(os.path.join(path, "conda.yaml"), "w", encoding="utf-8") as f:
            f.write(_model.to_yaml(env))

    fields = {}
    if artifact_path is not None:
        fields["artifact_path"] = artifact_path
    flavors = {
        "python_function": {
            "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
            "loader_module": "mlflow.sklearn",
            "model_path": _MODEL_FILE,
            "predict_fn": pyfunc_predict_fn,
            "python_version": python,
        },
        FLAVOR_NAME: {
            "code": None,
            "pickled_model": _MODEL_FILE,
            "serialization_format": serialization_format,
            "sklearn_version": _version("sklearn"),
        },
    }
    fields.update(
        {
            "flavors": flavors,
            "mlflow_version": _tracking.VERSION,
            "model_uuid": uuid.uuid4().hex,
            "run_id": _tracking._state.run_id,
            "utc_time_created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f"),
        }
    )
    if metadata:
        fields["metadata"] = dict(metadata)
    _model.write(path, fields)
    return fields


def save_model(
    sk_model,
    path,
    conda_env=None,
    code_paths=None,
    mlflow_model=None,
    serialization_format=None,
    signature=None,
    input_example=None,
    pip_requirements=None,
    extra_pip_requirements=None,
    pyfunc_predict_fn="predict",
    metadata=None,
):
    """Save a model in a new folder, path (pickled with pickle, unless
    serialization_format is "cloudpickle"). mlflow_model, signature and
    input_example are accepted and not written."""
    _save(sk_model, path, serialization_format, pip_requirements, extra_pip_requirements, conda_env, code_paths, pyfunc_predict_fn, metadata, None)


class ModelInfo:
    """What log_model returns."""

    def __init__(self, artifact_path, fields):
        self.artifact_path = artifact_path
        self.flavors = fields["flavors"]
        self.run_id = fields["run_id"]
        self.model_uri = "runs:/%s/%s" % (self.run_id, artifact_path)
        self.model_uuid = fields["model_uuid"]
        self.utc_time_created = fields["utc_time_created"]
        self.mlflow_version = fields["mlflow_version"]
        self.signature = None
        self.saved_input_example_info = None
        self.registered_model_version = None

    def __repr__(self):
        return "<ModelInfo: model_uri=%r>" % self.model_uri


def log_model(
    sk_model,
    artifact_path=None,
    conda_env=None,
    code_paths=None,
    serialization_format=None,
    registered_model_name=None,
    signature=None,
    input_example=None,
    await_registration_for=None,
    pip_requirements=None,
    extra_pip_requirements=None,
    pyfunc_predict_fn="predict",
    metadata=None,
    name=None,
    params=None,
    tags=None,
    model_type=None,
    step=0,
    model_id=None,
):
    """Save a model into the job's artifacts (./outputs/<artifact_path>),
    replacing what was logged there before. signature, input_example and
    MLflow 3's params, tags, model_type, step and model_id are accepted
    and not written; registered_model_name is not registered (a line on
    stderr says how to)."""
    ap = artifact_path or name
    if not ap:
        raise MlflowException('log_model: give the model\'s artifact_path (e.g. "model")')
    dest = _tracking.artifact_dest(ap, "artifact_path")
    run = _tracking._run()
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    # Written aside and moved in, so that a failed save leaves what was
    # logged before.
    tmp = tempfile.mkdtemp(prefix=".log_model-", dir=parent)
    try:
        fields = _save(sk_model, tmp, serialization_format, pip_requirements, extra_pip_requirements, conda_env, code_paths, pyfunc_predict_fn, metadata, ap)
        if os.path.isdir(dest) and not os.path.islink(dest):
            shutil.rmtree(dest)
        elif os.path.lexists(dest):
            os.remove(dest)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
    if registered_model_name:
        _tracking._warn(
            "log_model: the model is not registered as %r (Outpost's mlflow has no model registry); after the job: "
            "outpost ml model create --name %s --version 1 --type mlflow_model --path runs:/%s/%s"
            % (registered_model_name, registered_model_name, run.info.run_id, ap)
        )
    return ModelInfo(ap, fields)


def load_pickled(path, pickled_model):
    with open(os.path.join(path, pickled_model), "rb") as f:
        # A cloudpickle file loads with pickle once cloudpickle is
        # importable; it is imported by the file itself.
        return pickle.load(f)


def load_model(model_uri, dst_path=None):
    """Load a model saved by save_model or log_model (this job's, or the
    real mlflow's) from a folder, file:// or runs:/<this job>/<path>."""
    path = _model.local_path(model_uri)
    conf = _model.flavor(_model.read(path), path, FLAVOR_NAME)
    return load_pickled(path, conf.get("pickled_model") or _MODEL_FILE)
