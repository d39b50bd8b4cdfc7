"""Train a logistic regression on the Iris measurements in --data and keep
the fitted model in --model-dir, as an Azure ML command job does: the
params and the accuracy are logged with mlflow, and the model is saved
with mlflow.sklearn (model.pkl and an MLmodel file)."""
import argparse
import csv
import glob
import json
import os

import mlflow
import mlflow.sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split


def load(folder):
    rows = []
    for path in sorted(glob.glob(os.path.join(folder, "*.csv"))):
        with open(path, newline="") as f:
            rows.extend(csv.DictReader(f))
    if not rows:
        raise SystemExit(f"no CSV files in {folder}")
    features = [[float(r[k]) for k in ("sepal_length", "sepal_width", "petal_length", "petal_width")] for r in rows]
    labels = [r["species"] for r in rows]
    return features, labels


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--C", type=float, default=1.0)
    p.add_argument("--max-iter", type=int, default=100)
    p.add_argument("--model-dir", required=True)
    args = p.parse_args()

    mlflow.start_run()
    mlflow.log_params({"C": args.C, "max_iter": args.max_iter})
    x, y = load(args.data)
    print(f"loaded {len(x)} rows from {args.data}")
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    model = LogisticRegression(C=args.C, max_iter=args.max_iter).fit(x_train, y_train)
    accuracy = accuracy_score(y_test, model.predict(x_test))
    print(f"accuracy: {accuracy:.3f}")
    mlflow.log_metric("accuracy", accuracy)
    mlflow.log_metric("training_rows", len(x_train))

    # The output folder exists, empty: save_model writes the model in it.
    mlflow.sklearn.save_model(sk_model=model, path=args.model_dir)
    # ./outputs is kept as the job's artifacts.
    with open(os.path.join("outputs", "metrics.json"), "w") as f:
        json.dump({"accuracy": accuracy, "C": args.C, "rows": len(x)}, f)
    print(f"model written to {args.model_dir}")
    mlflow.end_run()


if __name__ == "__main__":
    main()
