"""The scoring script of the example deployments: Azure ML calls init()
once when an instance starts and run(raw_data) for every request."""
import json
import os
import pickle

import numpy

MODEL_FILE = "sklearn_regression_model.pkl"

model = None


def find_model(root):
    """The model file under AZUREML_MODEL_DIR: at model/<file> for a model
    registered from the folder model/ (the folder's name is kept), at the
    top for a model registered from the file itself."""
    for candidate in (os.path.join(root, "model", MODEL_FILE), os.path.join(root, MODEL_FILE)):
        if os.path.isfile(candidate):
            return candidate
    for folder, _, files in os.walk(root):
        if MODEL_FILE in files:
            return os.path.join(folder, MODEL_FILE)
    raise FileNotFoundError(f"no {MODEL_FILE} under AZUREML_MODEL_DIR={root}")


def init():
    global model
    path = find_model(os.environ["AZUREML_MODEL_DIR"])
    with open(path, "rb") as f:
        model = pickle.load(f)
    print(f"loaded the model from {path}")


def run(raw_data):
    """raw_data is the request's body: {"data": [[10 numbers], ...]}.
    Returns one prediction per row."""
    data = json.loads(raw_data)["data"]
    rows = numpy.array(data, dtype=float)
    if rows.ndim != 2 or rows.shape[1] != model.n_features_in_:
        raise ValueError(f"want {{\"data\": [[{model.n_features_in_} numbers], ...]}}, got rows of shape {list(rows.shape)}")
    return model.predict(rows).tolist()
