"""Train the example's model: a ridge regression on the diabetes data set
that ships with scikit-learn (442 patients, 10 numbers each), kept as
model/sklearn_regression_model.pkl, the file Azure ML's online endpoint
samples deploy.

    python3 train.py [--alpha 0.5] [--model-dir model]
"""
import argparse
import os
import pickle

from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_squared_error
from sklearn.model_selection import train_test_split


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--alpha", type=float, default=0.5)
    here = os.path.dirname(os.path.abspath(__file__))
    p.add_argument("--model-dir", default=os.path.join(here, "model"))
    args = p.parse_args()

    x, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)
    model = Ridge(alpha=args.alpha).fit(x_train, y_train)
    rmse = mean_squared_error(y_test, model.predict(x_test)) ** 0.5
    print(f"trained on {len(x_train)} rows; test RMSE {rmse:.1f}")

    os.makedirs(args.model_dir, exist_ok=True)
    path = os.path.join(args.model_dir, "sklearn_regression_model.pkl")
    with open(path, "wb") as f:
        pickle.dump(model, f)
    print(f"model written to {path}")


if __name__ == "__main__":
    main()
