"""Outpost's stand-in for MLflow's tracking API, for training jobs.

Training scripts written for Azure ML log with mlflow: log_metric,
log_params, set_tags, sklearn.save_model and so on. Outpost's job wrapper
puts this package on the job's PYTHONPATH, so that such scripts run
unchanged where mlflow is not installed: each call appends a JSON line to
the file named by OUTPOST_METRICS_FILE, which the wrapper sends to the
workspace (`outpost ml job metrics` shows them).

When the real mlflow is installed, this package steps aside: it leaves
sys.path and sys.modules, and the real one is imported in its place.

Only what __all__ lists is here; any other name raises AttributeError
saying so. The README's "Metrics (MLflow)" section says what is supported.
"""

import importlib
import importlib.util
import os
import sys


def _same_dir(entry, ours):
    # "" on sys.path is the current directory.
    try:
        return os.path.realpath(entry or os.getcwd()) == ours
    except (OSError, ValueError, TypeError):
        return False


def _step_aside():
    """Import the real mlflow in this module's place when there is one.

    Returns True when it did. An import statement returns what
    sys.modules holds under the name once the module's code has run, so
    the script that imported this package gets the real one.
    """
    ours = os.path.realpath(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    saved = list(sys.path)
    sys.path[:] = [p for p in saved if not _same_dir(p, ours)]
    me = sys.modules.pop(__name__)
    try:
        # find_spec asks every finder, editable installs' too.
        spec = importlib.util.find_spec(__name__)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        sys.path[:] = saved
        sys.modules[__name__] = me
        return False
    importlib.import_module(__name__)
    return True


if not _step_aside():
    from mlflow import exceptions, pyfunc, sklearn  # noqa: F401
    from mlflow._tracking import (  # noqa: F401
        ActiveRun,
        Experiment,
        Run,
        RunData,
        RunInfo,
        active_run,
        autolog,
        end_run,
        get_experiment_by_name,
        get_run,
        get_tracking_uri,
        log_artifact,
        log_artifacts,
        log_dict,
        log_metric,
        log_metrics,
        log_param,
        log_params,
        log_text,
        set_experiment,
        set_tag,
        set_tags,
        set_tracking_uri,
        start_run,
    )
    from mlflow.exceptions import MlflowException  # noqa: F401

    from mlflow._tracking import VERSION as __version__  # noqa: F401

    __all__ = [
        "ActiveRun",
        "Experiment",
        "MlflowException",
        "Run",
        "RunData",
        "RunInfo",
        "active_run",
        "autolog",
        "end_run",
        "exceptions",
        "get_experiment_by_name",
        "get_run",
        "get_tracking_uri",
        "log_artifact",
        "log_artifacts",
        "log_dict",
        "log_metric",
        "log_metrics",
        "log_param",
        "log_params",
        "log_text",
        "pyfunc",
        "set_experiment",
        "set_tag",
        "set_tags",
        "set_tracking_uri",
        "sklearn",
        "start_run",
    ]

    def __getattr__(name):
        # Names Python itself probes for (__path__, __wrapped__, ...) are
        # plain misses.
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(
            "module 'mlflow' has no attribute %r: this is Outpost's stand-in for mlflow, "
            "which the job's wrapper put on PYTHONPATH; it has %s. Install mlflow in the "
            "job's environment for the rest." % (name, ", ".join(__all__))
        )
