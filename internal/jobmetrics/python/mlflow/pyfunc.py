"""mlflow.pyfunc.load_model for the models Outpost's mlflow saves:
scikit-learn ones (loader_module mlflow.sklearn)."""

from mlflow import _model
from mlflow import sklearn as _sklearn
from mlflow.exceptions import MlflowException

FLAVOR_NAME = "python_function"


class PyFuncModel:
    """A loaded model: predict calls the model's predict_fn."""

    def __init__(self, model, mlmodel, predict_fn):
        self._model = model
        self.metadata = mlmodel
        self._predict_fn = predict_fn

    def predict(self, data, params=None):
        return getattr(self._model, self._predict_fn)(data)

    def unwrap_python_model(self):
        return self._model

    def __repr__(self):
        return "<PyFuncModel: %s>" % type(self._model).__name__


def load_model(model_uri, suppress_warnings=False, dst_path=None, model_config=None):
    path = _model.local_path(model_uri)
    mlmodel = _model.read(path)
    conf = _model.flavor(mlmodel, path, FLAVOR_NAME)
    loader = conf.get("loader_module")
    if loader != "mlflow.sklearn":
        raise MlflowException(
            "the model at %s is loaded by %s, which Outpost's mlflow does not have (it loads scikit-learn models only)" % (path, loader)
        )
    sk = _model.flavor(mlmodel, path, _sklearn.FLAVOR_NAME)
    model = _sklearn.load_pickled(path, conf.get("model_path") or sk.get("pickled_model") or "model.pkl")
    return PyFuncModel(model, mlmodel, conf.get("predict_fn") or "predict")
