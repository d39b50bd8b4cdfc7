"""Distributed data-parallel training on CPU: every process reads the wiring
Azure ML sets (MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK, LOCAL_RANK), trains
on its shard of scikit-learn's digits, and rank 0 keeps the model."""
import argparse
import os

import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--model-dir", required=True)
    args = p.parse_args()

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    print(f"rank {rank} of {world} (master {os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']})", flush=True)
    torch.manual_seed(0)

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.25, random_state=0)
    train = TensorDataset(torch.tensor(x_train, dtype=torch.float32), torch.tensor(y_train))
    sampler = DistributedSampler(train, num_replicas=world, rank=rank, shuffle=True, seed=0)
    loader = DataLoader(train, batch_size=32, sampler=sampler)

    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    model = DistributedDataParallel(net)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loss_fn = torch.nn.CrossEntropyLoss()
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        total, batches = 0.0, 0
        for xb, yb in loader:
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()  # gradients are averaged across the world here
            opt.step()
            total, batches = total + loss.item(), batches + 1
        # The mean loss over every process's batches.
        t = torch.tensor([total, batches], dtype=torch.float64)
        dist.all_reduce(t)
        if rank == 0:
            print(f"epoch {epoch + 1}: loss {t[0].item() / t[1].item():.4f}", flush=True)

    if rank == 0:
        with torch.no_grad():
            pred = net(torch.tensor(x_test, dtype=torch.float32)).argmax(dim=1)
        accuracy = (pred == torch.tensor(y_test)).float().mean().item()
        print(f"accuracy: {accuracy:.3f}", flush=True)
        os.makedirs(args.model_dir, exist_ok=True)
        torch.save(net.state_dict(), os.path.join(args.model_dir, "model.pt"))
        os.makedirs("outputs", exist_ok=True)
        with open(os.path.join("outputs", "accuracy.txt"), "w") as f:
            f.write(f"{accuracy:.4f}\n")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
