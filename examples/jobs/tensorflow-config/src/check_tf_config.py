"""What tf.distribute reads, checked without TensorFlow: TF_CONFIG names
every task's address (workers, then parameter servers when there are some)
and this process's own task. Worker 0 (the chief) listens at its address;
every other task connects to it there and says hello, as TensorFlow's tasks
would to exchange gradients and variables."""
import json
import os
import socket
import time

config = json.loads(os.environ["TF_CONFIG"])
cluster, task = config["cluster"], config["task"]
workers, ps = cluster["worker"], cluster.get("ps", [])
print(f"TF_CONFIG: {len(workers)} workers {workers}, {len(ps)} parameter servers {ps}; "
      f"this is {task['type']} {task['index']}", flush=True)
assert set(cluster) <= {"worker", "ps"}, cluster
assert task["type"] in cluster and 0 <= task["index"] < len(cluster[task["type"]]), task
me = f"{task['type']} {task['index']}"

host, port = workers[0].rsplit(":", 1)
if task["type"] == "worker" and task["index"] == 0:
    with socket.create_server(("", int(port))) as server:
        server.settimeout(120)
        for _ in range(len(workers) + len(ps) - 1):
            conn, _ = server.accept()
            with conn:
                print(f"worker 0 heard: {conn.recv(1024).decode()}", flush=True)
                conn.sendall(b"welcome")
    print("all tasks checked in", flush=True)
else:
    deadline = time.time() + 120
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=5) as conn:
                conn.sendall(f"hello from {me}".encode())
                print(f"{me} got: {conn.recv(1024).decode()}", flush=True)
                break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)  # worker 0 may not listen yet
