"""Jobs with MLClient: load_job, submission (uploads, the document sent,
errors pointed at their lines), get, list, cancel and stream."""

import base64
import hashlib
import io
import os
import shutil
import tempfile
import unittest
import urllib.parse
from contextlib import redirect_stderr, redirect_stdout

from outpost.exceptions import HttpResponseError, JobException, ValidationException
from outpost.ml import Job, MLClient, load_job
from outpost.ml import _jobs

from .fakeworkspace import FakeWorkspace, LoginEnv

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..", "..")
BASE = "/resourceGroups/rg/workspaces/ws"


class JobWorkspace:
    """Datastore and job routes in memory."""

    def __init__(self, ws: FakeWorkspace) -> None:
        self.blobs = {}
        self.files = {}
        self.jobs = {}
        ws.route("GET", BASE + "/datastores/workspaceblobstore/files", self.list)
        ws.route("HEAD", BASE + "/blobs/sha256:([0-9a-f]+)", self.head)
        ws.route("PUT", BASE + "/blobs/sha256:([0-9a-f]+)", self.put_blob)
        ws.route("POST", BASE + "/datastores/workspaceblobstore/commit", self.commit)
        ws.route("PUT", BASE + "/jobs/([^/]+)", self.put_job)
        ws.route("GET", BASE + "/jobs/([^/]+)", self.get_job)
        ws.route("GET", BASE + "/jobs", lambda r: (200, list(self.jobs.values())))
        ws.route("POST", BASE + "/jobs/([^/]+)/cancel", self.cancel)

    def list(self, r):
        prefix = urllib.parse.parse_qs(r.query).get("prefix", [""])[0]
        return 200, [f for p, f in self.files.items() if p.startswith(prefix)]

    def head(self, r):
        return (200 if r.path.rsplit(":", 1)[1] in self.blobs else 404), None

    def put_blob(self, r):
        digest = r.path.rsplit(":", 1)[1]
        if hashlib.sha256(r.body).hexdigest() != digest:
            return 400, {"code": "DigestMismatch", "message": "digest mismatch"}
        self.blobs[digest] = r.body
        return 201, None

    def commit(self, r):
        files = r.json()["files"]
        for f in files:
            if f["sha256"] not in self.blobs:
                return 400, {"code": "InvalidRequest", "message": "blob not uploaded: " + f["path"]}
            self.files[f["path"]] = f
        return 200, files

    def put_job(self, r):
        doc = r.json()
        doc.update(status="NotStarted", id=r.path, services={"Studio": {"endpoint": "https://ws/jobs/" + doc["name"]}})
        self.jobs[doc["name"]] = doc
        return 201, doc

    def get_job(self, r):
        name = r.path.rsplit("/", 1)[1]
        if name not in self.jobs:
            return 404, {"code": "NotFound", "message": f"job {name} not found"}
        return 200, self.jobs[name]

    def cancel(self, r):
        name = r.path.split("/")[-2]
        self.jobs[name]["status"] = "CancelRequested"
        return 200, self.jobs[name]


class JobsTest(unittest.TestCase):
    def setUp(self):
        self.ws = FakeWorkspace()
        self.addCleanup(self.ws.close)
        self.env = LoginEnv(self.ws.url)
        self.addCleanup(self.env.restore)
        self.store = JobWorkspace(self.ws)
        self.ml = MLClient(resource_group_name="rg", workspace_name="ws")
        self.dir = tempfile.mkdtemp(prefix="outpost-sdk-job-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def write(self, rel, content, mode=0o644):
        p = os.path.join(self.dir, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(content)
        os.chmod(p, mode)
        return p

    def submit(self, job, **kw):
        err = io.StringIO()
        with redirect_stderr(err):
            return self.ml.jobs.create_or_update(job, **kw), err.getvalue()

    def test_load_job(self):
        job = load_job(os.path.join(ROOT, "examples", "jobs", "sklearn-iris", "job.yml"),
                       params_override=[{"display_name": "other"}, {"inputs.max_iter": 5}])
        self.assertIsInstance(job, Job)
        self.assertEqual((job.display_name, job.compute, job.name, job.status), ("other", "local-compute", None, None))
        self.assertEqual(job.inputs["max_iter"], 5)
        self.assertEqual(job.inputs["iris"], {"type": "uri_folder", "path": "./data"})
        job.experiment_name = "exp"
        self.assertEqual(job._to_dict()["experiment_name"], "exp")
        with self.assertRaises(AttributeError):
            job.status = "Completed"

    def test_load_job_errors(self):
        with self.assertRaises(ValidationException):
            load_job(os.path.join(self.dir, "missing.yml"))
        p = self.write("empty.yml", "# nothing\n")
        with self.assertRaises(ValidationException) as cm:
            load_job(p)
        self.assertIn("the file is empty", str(cm.exception))
        p = self.write("list.yml", "- a\n")
        with self.assertRaises(ValidationException) as cm:
            load_job(p)
        self.assertIn("must be a mapping", str(cm.exception))

    def test_submit_uploads_and_puts(self):
        self.write("src/main.py", "print('hi')\n")
        self.write("src/run.sh", "#!/bin/sh\n", 0o755)
        self.write("src/.amlignore", "*.log\n")
        self.write("src/debug.log", "ignored\n")
        self.write("data/one.csv", "a\n1\n")
        self.write("env/conda.yml", "name: e\ndependencies: [python=3.11]\nchannels: [conda-forge]\n")
        p = self.write("job.yml", "code: src\ncommand: python main.py ${{inputs.data}} ${{inputs.lr}}\n"
                                  "inputs:\n  data:\n    type: uri_file\n    path: data/one.csv\n  lr: 1.50\n"
                                  "environment:\n  image: python\n  conda_file: env/conda.yml\ncompute: azureml:local\n")
        job, progress = self.submit(load_job(p), tags={"t": "1"})
        self.assertEqual(job.status, "NotStarted")
        self.assertRegex(job.name, r"^[a-z]+_[a-z]+_[a-z0-9]{10}$")
        self.assertEqual(job.experiment_name, os.path.basename(os.getcwd()))
        self.assertIn("Uploading code (3 files", progress)
        self.assertIn("Uploading inputs.data.path (1 file", progress)
        sent = self.ws.sent("PUT", BASE + "/jobs/.*")[0]
        self.assertIn(b'"lr":1.50', sent.body)
        doc = sent.json()
        self.assertRegex(doc["code"], r"^azureml://datastores/workspaceblobstore/paths/LocalUpload/[0-9a-f]{64}/src/$")
        self.assertRegex(doc["inputs"]["data"]["path"], r"^azureml://datastores/workspaceblobstore/paths/LocalUpload/[0-9a-f]{64}/one.csv$")
        self.assertEqual(doc["environment"]["conda_file"], {"channels": ["conda-forge"], "dependencies": ["python=3.11"], "name": "e"})
        self.assertEqual(list(doc["environment"]["conda_file"]), ["channels", "dependencies", "name"])
        self.assertEqual(doc["tags"], {"t": "1"})
        code_prefix = doc["code"].split("/paths/", 1)[1]
        self.assertEqual(sorted(p for p in self.store.files if p.startswith(code_prefix)),
                         [code_prefix + ".amlignore", code_prefix + "main.py", code_prefix + "run.sh"])
        self.assertEqual(self.store.files[code_prefix + "run.sh"]["mode"], 0o755)
        # The same code again is not uploaded again.
        puts = len(self.ws.sent("PUT", BASE + "/blobs/.*"))
        _, progress = self.submit(load_job(p))
        self.assertIn("code unchanged, reusing its upload", progress)
        self.assertEqual(len(self.ws.sent("PUT", BASE + "/blobs/.*")), puts)

    def test_local_problems_point_at_lines(self):
        p = self.write("job.yml", "command: echo\ncode: ./nowhere\ninputs:\n  d:\n    type: uri_folder\n    path: ./missing\n")
        with self.assertRaises(ValidationException) as cm:
            self.submit(load_job(p))
        msg = str(cm.exception)
        self.assertIn(f"{p}, line 2: code: {os.path.join(self.dir, 'nowhere')} does not exist", msg)
        self.assertIn(f"{p}, line 6: inputs.d.path: {os.path.join(self.dir, 'missing')} does not exist", msg)
        self.assertEqual(self.ws.sent("PUT", BASE + "/jobs/.*"), [])
        p = self.write("sweep.yml", "type: sweep\ntrial: {}\n")
        with self.assertRaises(ValidationException) as cm:
            self.submit(load_job(p))
        self.assertIn(f"{p}, line 1: type: sweep jobs are not supported yet", str(cm.exception))

    def test_workspace_refusal_points_at_lines(self):
        self.ws.answer("PUT", BASE + "/jobs/j1", 400, {"code": "InvalidJob", "message":
                       "compute: compute nope is not attached to workspace ws\nresources.instance_count: must be 1 or more"})
        p = self.write("job.yml", "name: j1\ncommand: echo\ncompute: azureml:nope\nresources:\n  instance_count: 0\n")
        with self.assertRaises(HttpResponseError) as cm:
            self.submit(load_job(p))
        self.assertEqual(str(cm.exception), f"{p}, line 3: compute: compute nope is not attached to workspace ws\n"
                                            f"{p}, line 5: resources.instance_count: must be 1 or more")
        self.assertEqual(cm.exception.code, "InvalidJob")

    def test_get_list_cancel(self):
        p = self.write("job.yml", "name: j2\ncommand: echo\ndisplay_name: two\ncompute: azureml:local\n")
        self.submit(load_job(p))
        j = self.ml.jobs.get("j2")
        self.assertEqual((j.name, j.display_name, j.compute, j.status), ("j2", "two", "local", "NotStarted"))
        self.assertEqual(j.studio_url, "https://ws/jobs/j2")
        self.assertEqual([x.name for x in self.ml.jobs.list()], ["j2"])
        self.assertEqual(self.ml.jobs.begin_cancel("j2").result().status, "CancelRequested")


class StreamTest(unittest.TestCase):
    def setUp(self):
        self.ws = FakeWorkspace()
        self.addCleanup(self.ws.close)
        self.env = LoginEnv(self.ws.url)
        self.addCleanup(self.env.restore)
        self.ml = MLClient(resource_group_name="rg", workspace_name="ws")
        saved = _jobs.RECONNECT_DELAY
        _jobs.RECONNECT_DELAY = 0.01
        self.addCleanup(setattr, _jobs, "RECONNECT_DELAY", saved)

    def serve(self, job, answers):
        """The job, and its logs answered from a list in turn (an int answers that status)."""
        self.ws.answer("GET", BASE + "/jobs/j", 200, job)
        queue = list(answers)

        def logs(r):
            a = queue.pop(0)
            if isinstance(a, int):
                return a, {"code": "Unavailable", "message": "restarting"}
            return 200, a

        self.ws.route("GET", BASE + "/jobs/j/logs", logs)

    @staticmethod
    def chunk(file, offset, text):
        return {"file": file, "offset": offset, "data": base64.b64encode(text.encode()).decode()}

    def stream(self):
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            try:
                self.ml.jobs.stream("j")
            except JobException as e:
                return out.getvalue(), err.getvalue(), e
        return out.getvalue(), err.getvalue(), None

    def test_completed(self):
        f = "user_logs/std_log.txt"
        self.serve({"name": "j", "services": {"Studio": {"endpoint": "https://ws/j"}}}, [
            {"status": "Queued", "status_message": "waiting for 1 cpu", "chunks": [], "done": False},
            {"status": "Running", "chunks": [self.chunk(f, 0, "hello ")], "done": False},
            503,
            {"status": "Running", "chunks": [self.chunk(f, 0, "hello "), self.chunk(f, 6, "world\n")], "done": False},
            {"status": "Completed", "chunks": [], "done": True},
        ])
        out, err, exc = self.stream()
        self.assertIsNone(exc)
        title = "Streaming " + f
        self.assertEqual(out, f"RunId: j\nWeb View: https://ws/j\n{title}\n{'=' * len(title)}\nhello world\n\n"
                              "Execution Summary\n=================\nRunId: j\nWeb View: https://ws/j\n")
        self.assertEqual(err, "[Queued] waiting for 1 cpu\n[Running]\nlost the workspace (restarting); reconnecting ...\n"
                              "reconnected\n[Completed]\n")
        froms = [urllib.parse.parse_qs(r.query).get("from", [""])[0] for r in self.ws.sent("GET", BASE + "/jobs/j/logs")]
        self.assertEqual(froms, ["", "", f + ":6", f + ":6", f + ":12"])

    def test_failed_raises(self):
        self.serve({"name": "j"}, [{"status": "Failed", "status_message": "exit code 3", "chunks": [], "done": True}])
        out, err, exc = self.stream()
        self.assertIsInstance(exc, JobException)
        self.assertEqual((str(exc), exc.status), ("job j failed: exit code 3", "Failed"))
        self.assertIn("Execution Summary", out)

    def test_ranks_prefixed(self):
        r0, r1 = "user_logs/std_log_process_0.txt", "user_logs/std_log_process_1.txt"
        self.serve({"name": "j", "resources": {"instance_count": 2}, "distribution": {"type": "pytorch"}}, [
            {"status": "Running", "chunks": [self.chunk(r0, 0, "a\nb"), self.chunk(r1, 0, "c\n")], "done": False},
            {"status": "Completed", "chunks": [self.chunk(r0, 3, "\n")], "done": True},
        ])
        out, _, exc = self.stream()
        self.assertIsNone(exc)
        self.assertIn("[rank 0] a\n", out)
        self.assertIn("[rank 1] c\n", out)
        self.assertIn("[rank 0] b\n", out)


if __name__ == "__main__":
    unittest.main()
