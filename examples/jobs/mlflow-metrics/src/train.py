"""Train a linear classifier on the Iris data set bundled with scikit-learn,
one epoch at a time, logging the training curve with mlflow as Azure ML
training scripts do: params, a loss and an accuracy per epoch, tags, and
the model (mlflow.sklearn.log_model, into the job's artifacts).

Run as several processes (distribution: pytorch or mpi), each logs its own
curve, on its own shuffle of the data; `outpost ml job metrics` shows them
by rank."""
import argparse
import os

import mlflow
import mlflow.sklearn
from sklearn.datasets import load_iris
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.05)
    args = p.parse_args()
    # Azure ML names a process's rank in RANK (PyTorch) or
    # OMPI_COMM_WORLD_RANK (MPI).
    rank = int(os.environ.get("RANK") or os.environ.get("OMPI_COMM_WORLD_RANK") or 0)

    x, y = load_iris(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=rank, stratify=y)
    model = SGDClassifier(loss="log_loss", learning_rate="constant", eta0=args.lr, random_state=rank)

    with mlflow.start_run() as run:
        print(f"rank {rank}: run {run.info.run_id}")
        mlflow.log_params({"epochs": args.epochs, "lr": args.lr, "model": "SGDClassifier"})
        mlflow.set_tags({"data": "iris", "framework": "scikit-learn"})
        for epoch in range(args.epochs):
            model.partial_fit(x_train, y_train, classes=[0, 1, 2])
            loss = log_loss(y_train, model.predict_proba(x_train), labels=[0, 1, 2])
            accuracy = accuracy_score(y_test, model.predict(x_test))
            mlflow.log_metrics({"train_loss": loss, "val_accuracy": accuracy}, step=epoch)
        print(f"rank {rank}: accuracy {accuracy:.3f} after {args.epochs} epochs")
        if rank == 0:
            info = mlflow.sklearn.log_model(model, "model")
            print(f"model logged: {info.model_uri}")


if __name__ == "__main__":
    main()
