"""What tf.distribute.MultiWorkerMirroredStrategy reads, checked without
TensorFlow: TF_CONFIG names every worker's address and this process's task;
worker 0 listens at its address and every other worker connects to it there
and says hello, as TensorFlow's workers would to exchange gradients."""
import json
import os
import socket
import time

config = json.loads(os.environ["TF_CONFIG"])
workers = config["cluster"]["worker"]
task = config["task"]
print(f"TF_CONFIG: {len(workers)} workers {workers}; this is {task['type']} {task['index']}", flush=True)
assert task["type"] == "worker" and 0 <= task["index"] < len(workers), task

host, port = workers[0].rsplit(":", 1)
if task["index"] == 0:
    with socket.create_server(("", int(port))) as server:
        server.settimeout(120)
        for _ in range(len(workers) - 1):
            conn, _ = server.accept()
            with conn:
                hello = conn.recv(1024).decode()
                print(f"worker 0 heard: {hello}", flush=True)
                conn.sendall(b"welcome")
    print("all workers checked in", flush=True)
else:
    deadline = time.time() + 120
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=5) as conn:
                conn.sendall(f"hello from worker {task['index']}".encode())
                print(f"worker {task['index']} got: {conn.recv(1024).decode()}", flush=True)
                break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)  # worker 0 may not listen yet
