"""Tests of Outpost's stand-in mlflow (python/mlflow), run by the Go test
TestPythonPackage with OUTPOST_TEST_PYLIB naming the folder it was
installed in. Each case runs a script in a fresh interpreter, as a job's
process would, with the environment the job's wrapper gives it."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

PYLIB = os.environ["OUTPOST_TEST_PYLIB"]
HERE = os.path.dirname(os.path.abspath(__file__))


def has(module):
    return subprocess.run([sys.executable, "-c", "import " + module], capture_output=True).returncode == 0


class Job:
    """A job's root: the metrics file and ./outputs of one process."""

    def __init__(self, case):
        self.dir = tempfile.mkdtemp(prefix="mlflow-test-")
        case.addCleanup(shutil.rmtree, self.dir)
        self.case = case
        self.metrics = os.path.join(self.dir, "metrics", "rank_0.jsonl")
        self.outputs = os.path.join(self.dir, "wd", "outputs")
        os.makedirs(self.outputs)

    def env(self, **extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OUTPOST_", "AZUREML_", "MLFLOW_"))}
        env.update(
            PYTHONPATH=os.pathsep.join([PYLIB, HERE]),
            PYTHONDONTWRITEBYTECODE="1",
            AZUREML_RUN_ID="job_1",
            AZUREML_EXPERIMENT_NAME="exp1",
            OUTPOST_METRICS_FILE=self.metrics,
            OUTPOST_METRICS_LIMIT="100000",
            OUTPOST_ARTIFACTS_DIR=self.outputs,
        )
        for k, v in extra.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        return env

    def run(self, code, ok=True, **env):
        p = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            cwd=os.path.join(self.dir, "wd"),
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if ok and p.returncode != 0:
            self.case.fail("script failed (%d):\n%s\n%s" % (p.returncode, p.stdout, p.stderr))
        return p

    def records(self):
        if not os.path.exists(self.metrics):
            return []
        with open(self.metrics, encoding="ascii") as f:
            data = f.read()
        self.case.assertTrue(data == "" or data.endswith("\n"), "the file ends mid-line: %r" % data[-80:])
        return [json.loads(line) for line in data.splitlines()]


class TrackingTest(unittest.TestCase):
    def test_metrics_params_tags(self):
        job = Job(self)
        before = int(time.time() * 1000)
        p = job.run(
            """
            import mlflow
            with mlflow.start_run() as run:
                print("run", run.info.run_id)
                mlflow.log_metric("accuracy", 0.93)
                mlflow.log_metrics({"loss": 0.5, "ok": True, "big": 10**3}, step=3)
                mlflow.log_metric("loss", float("nan"), step=4, timestamp=1700000000000)
                mlflow.log_metric("loss", float("inf"), step=5)
                mlflow.log_metric("loss", float("-inf"), step=6)
                print("param", mlflow.log_param("C", 1.0))
                mlflow.log_param("C", 1.0)  # the same value again: nothing new
                mlflow.log_params({"solver": "lbfgs", "layers": [1, 2]})
                mlflow.set_tag("stage", "dev")
                mlflow.set_tags({"stage": "prod", "owner": "me"})
                print("metrics", sorted(mlflow.active_run().data.metrics.items()))
            print("after", mlflow.active_run())
            """
        )
        after = int(time.time() * 1000)
        self.assertIn("run job_1", p.stdout)
        self.assertIn("param 1.0", p.stdout)
        self.assertIn("after None", p.stdout)
        # The latest value of a metric is the highest step's.
        self.assertIn("('big', 1000.0)", p.stdout)
        self.assertIn("('loss', -inf)", p.stdout)
        recs = job.records()
        got = [(r["type"], r["key"], r["value"], r.get("step")) for r in recs]
        self.assertEqual(
            got,
            [
                ("metric", "accuracy", 0.93, 0),
                ("metric", "loss", 0.5, 3),
                ("metric", "ok", 1.0, 3),
                ("metric", "big", 1000.0, 3),
                ("metric", "loss", "NaN", 4),
                ("metric", "loss", "Infinity", 5),
                ("metric", "loss", "-Infinity", 6),
                ("param", "C", "1.0", None),
                ("param", "solver", "lbfgs", None),
                ("param", "layers", "[1, 2]", None),
                ("tag", "stage", "dev", None),
                ("tag", "stage", "prod", None),
                ("tag", "owner", "me", None),
            ],
        )
        for r in recs:
            self.assertIsInstance(r["timestamp"], int)
            if r.get("timestamp") != 1700000000000:
                self.assertTrue(before <= r["timestamp"] <= after, r)
        self.assertEqual(recs[4]["timestamp"], 1700000000000)

    def test_logging_without_start_run_starts_the_job_run(self):
        job = Job(self)
        p = job.run(
            """
            import mlflow
            mlflow.log_metric("m", 1)
            print(mlflow.active_run().info.run_id, mlflow.get_run("job_1").data.metrics)
            mlflow.end_run()
            mlflow.log_metric("m", 2, step=1)
            print(mlflow.active_run().info.run_id)
            """
        )
        self.assertEqual(p.stdout.split(), ["job_1", "{'m':", "1.0}", "job_1"])
        self.assertEqual([r["value"] for r in job.records()], [1.0, 2.0])

    def test_bad_input_is_refused_with_a_clear_error(self):
        job = Job(self)
        cases = [
            ('mlflow.log_metric("acc", "0.9")', "is not a number"),
            ('mlflow.log_metric("acc", None)', "is not a number"),
            ('mlflow.log_metric("acc", 1j)', "is not a number"),
            ('mlflow.log_metric("acc", [1])', "is not a number"),
            ('mlflow.log_metrics({"a": 1, "b": "x"})', "'b'"),
            ('mlflow.log_metric("acc", 1, step=1.5)', "whole number"),
            ('mlflow.log_metric("acc", 1, step=2**64)', "64-bit"),
            ('mlflow.log_metric("bad|key", 1)', "'|' is not allowed"),
            ('mlflow.log_metric("", 1)', "1 to 250"),
            ('mlflow.log_metric("k" * 251, 1)', "1 to 250"),
            ('mlflow.log_metric("a/../b", 1)', "'..'"),
            ('mlflow.log_metric("/abs", 1)', "leading"),
            ('mlflow.log_metric(3, 1)', "want a string"),
            ('mlflow.log_param("p", "x" * 6001)', "at most 6000"),
            ('mlflow.set_tag("t", "x" * 8001)', "at most 8000"),
            ('mlflow.log_param("p", 1); mlflow.log_param("p", 2)', "cannot change"),
            ('mlflow.log_metric("m", 1, run_id="other")', "not this job's run"),
            ('mlflow.start_run(); mlflow.start_run()', "already active"),
            ('mlflow.start_run(); mlflow.start_run(nested=True)', "nested runs are not supported"),
            ('mlflow.end_run("DONE")', "want one of"),
        ]
        for code, want in cases:
            with self.subTest(code=code):
                p = job.run(
                    """
                    import mlflow
                    from mlflow.exceptions import MlflowException
                    try:
                        %s
                    except MlflowException as e:
                        print("refused:", e)
                    """
                    % code
                )
                self.assertIn("refused:", p.stdout)
                self.assertIn(want, p.stdout)
        # Only the first of the two params got in; nothing else did.
        self.assertEqual([(r["type"], r["key"]) for r in job.records()], [("param", "p")])

    def test_numpy_values(self):
        if not has("numpy"):
            self.skipTest("numpy is not installed")
        job = Job(self)
        p = job.run(
            """
            import numpy as np, mlflow
            mlflow.log_metric("f32", np.float32(0.5), step=np.int64(2))
            mlflow.log_metric("i", np.int32(7))
            try:
                mlflow.log_metric("b", np.array([1.0, 2.0]))
            except mlflow.MlflowException as e:
                print("refused", e)
            """
        )
        self.assertEqual([(r["key"], r["value"], r["step"]) for r in job.records()], [("f32", 0.5, 2), ("i", 7.0, 0)])
        self.assertIn("is not a number", p.stdout)

    def test_run_info_names_tags_and_experiment(self):
        job = Job(self)
        p = job.run(
            """
            import mlflow
            print(mlflow.set_experiment("ignored").name, mlflow.get_experiment_by_name("exp1").name, mlflow.get_experiment_by_name("x"))
            mlflow.set_tracking_uri("http://nowhere:5000")
            print(mlflow.get_tracking_uri())
            run = mlflow.start_run(run_name="trial", tags={"k": "v"}, description="about")
            print(run.info.run_id, run.info.run_name, run.info.experiment_id, run.info.status)
            mlflow.end_run(status="KILLED")
            print(run.info.status, run.info.end_time is not None)
            print(mlflow.start_run(run_id="job_1").info.run_id)
            """
        )
        self.assertEqual(
            p.stdout.splitlines(),
            ["exp1 exp1 None", "http://nowhere:5000", "job_1 trial exp1 RUNNING", "KILLED True", "job_1"],
        )
        self.assertEqual(
            {r["key"]: r["value"] for r in job.records()},
            {"k": "v", "mlflow.runName": "trial", "mlflow.note.content": "about"},
        )

    def test_context_manager_fails_the_run_on_an_exception(self):
        job = Job(self)
        p = job.run(
            """
            import mlflow
            try:
                with mlflow.start_run() as run:
                    raise ValueError("boom")
            except ValueError:
                print(run.info.status, mlflow.active_run())
            """
        )
        self.assertEqual(p.stdout.strip(), "FAILED None")

    def test_autolog_says_it_logs_nothing(self):
        job = Job(self)
        p = job.run(
            """
            import mlflow
            mlflow.autolog()
            mlflow.autolog(log_models=False)
            mlflow.sklearn.autolog(max_tuning_runs=3)
            mlflow.sklearn.autolog(disable=True)
            """
        )
        lines = p.stderr.splitlines()
        self.assertEqual(len(lines), 2, p.stderr)
        self.assertIn("mlflow.autolog: autologging is not supported by Outpost's mlflow; nothing is logged automatically", lines[0])
        self.assertIn("mlflow.sklearn.autolog: autologging is not supported", lines[1])
        self.assertEqual(job.records(), [])

    def test_without_the_wrapper_nothing_is_recorded(self):
        job = Job(self)
        p = job.run('import mlflow; mlflow.log_metric("a", 1); mlflow.log_metric("b", 2)', OUTPOST_METRICS_FILE=None)
        self.assertEqual(p.stderr.count("OUTPOST_METRICS_FILE is not set"), 1, p.stderr)
        self.assertFalse(os.path.exists(job.metrics))

    def test_limit(self):
        job = Job(self)
        p = job.run(
            """
            import mlflow
            mlflow.log_metrics({"a": 1, "b": 2})
            mlflow.log_metrics({"c": 3, "d": 4})
            mlflow.log_param("p", 5)
            """,
            OUTPOST_METRICS_LIMIT="3",
        )
        self.assertEqual([r["key"] for r in job.records()], ["a", "b", "c"])
        self.assertEqual(p.stderr.count("at most 3 metric values, params and tags"), 1, p.stderr)

    def test_threads_and_processes_write_whole_lines(self):
        job = Job(self)
        job.run(
            """
            import mlflow, multiprocessing, threading
            def work(n):
                for i in range(300):
                    mlflow.log_metrics({"w%d" % n: i, "x" * 200: i}, step=i)
            if __name__ == "__main__":
                ts = [threading.Thread(target=work, args=(n,)) for n in range(4)]
                ps = [multiprocessing.get_context("fork").Process(target=work, args=(n,)) for n in range(4, 6)]
                for t in ts + ps:
                    t.start()
                for t in ts + ps:
                    t.join()
            """
        )
        recs = job.records()
        self.assertEqual(len(recs), 6 * 300 * 2)
        for n in range(6):
            self.assertEqual([r["step"] for r in recs if r["key"] == "w%d" % n], list(range(300)))

    def test_unknown_names_say_what_this_is(self):
        job = Job(self)
        p = job.run(
            """
            import mlflow
            try:
                mlflow.MlflowClient
            except AttributeError as e:
                print(e)
            print(mlflow.__version__, hasattr(mlflow, "__wrapped__"))
            """
        )
        self.assertIn("module 'mlflow' has no attribute 'MlflowClient': this is Outpost's stand-in for mlflow", p.stdout)
        self.assertIn("2.0.0+outpost False", p.stdout)

    def test_artifacts(self):
        job = Job(self)
        src = os.path.join(job.dir, "report.txt")
        with open(src, "w") as f:
            f.write("report")
        os.makedirs(os.path.join(job.dir, "plots", "sub"))
        with open(os.path.join(job.dir, "plots", "sub", "p.txt"), "w") as f:
            f.write("plot")
        p = job.run(
            """
            import mlflow
            mlflow.log_artifact(%r)
            mlflow.log_artifact(%r, artifact_path="reports")
            mlflow.log_artifacts(%r, "plots")
            mlflow.log_text("hello", "notes/a.txt")
            mlflow.log_dict({"k": [1, 2]}, "cfg.yaml")
            with open("outputs/own.txt", "w") as f:
                f.write("own")
            mlflow.log_artifact("outputs/own.txt")  # there already
            for bad in ("../x", "/abs", "a/../../b"):
                try:
                    mlflow.log_text("x", bad)
                except mlflow.MlflowException as e:
                    print("refused", e)
            """
            % (src, src, os.path.join(job.dir, "plots"))
        )
        self.assertEqual(p.stdout.count("refused"), 3, p.stdout)
        files = {}
        for d, _, names in os.walk(job.outputs):
            for n in names:
                path = os.path.join(d, n)
                with open(path) as f:
                    files[os.path.relpath(path, job.outputs)] = f.read()
        self.assertEqual(
            files,
            {
                "report.txt": "report",
                "reports/report.txt": "report",
                "plots/sub/p.txt": "plot",
                "notes/a.txt": "hello",
                "cfg.yaml": '{\n  "k": [\n    1,\n    2\n  ]\n}\n',
                "own.txt": "own",
            },
        )


class ModelTest(unittest.TestCase):
    def test_save_load_and_refuse_a_folder_in_use(self):
        job = Job(self)
        p = job.run(
            """
            import os, mlflow, mlflow.sklearn, toymodel
            os.makedirs("empty")
            mlflow.sklearn.save_model(toymodel.Doubler(3), "empty")
            mlflow.sklearn.save_model(sk_model=toymodel.Doubler(), path="m", metadata={"owner": "me"})
            print(sorted(os.listdir("m")))
            print(mlflow.sklearn.load_model("m").predict([1, 2]), mlflow.sklearn.load_model("empty").predict([1]))
            print(mlflow.pyfunc.load_model(os.path.abspath("m")).predict([5]))
            try:
                mlflow.sklearn.save_model(toymodel.Doubler(), "m")
            except mlflow.MlflowException as e:
                print("refused", e)
            try:
                mlflow.sklearn.save_model(toymodel.Doubler(), "x", serialization_format="json")
            except mlflow.MlflowException as e:
                print("refused", e)
            try:
                mlflow.sklearn.load_model("nowhere")
            except mlflow.MlflowException as e:
                print("refused", e)
            try:
                mlflow.sklearn.save_model(toymodel.Doubler(), "cp", serialization_format="cloudpickle")
                print("cloudpickle", mlflow.sklearn.load_model("cp").predict([1]))
            except mlflow.MlflowException as e:
                print("refused", e)
            """
        )
        lines = p.stdout.splitlines()
        self.assertEqual(lines[0], "['MLmodel', 'conda.yaml', 'model.pkl', 'python_env.yaml', 'requirements.txt']")
        self.assertEqual(lines[1], "[2, 4] [3]")
        self.assertEqual(lines[2], "[10]")
        self.assertIn("already exists and is not empty", lines[3])
        self.assertIn("serialization_format 'json'", lines[4])
        self.assertIn("has no MLmodel file", lines[5])
        if has("cloudpickle"):
            self.assertEqual(lines[6], "cloudpickle [2]")
        else:
            self.assertIn("serialization_format 'cloudpickle': cloudpickle is not installed", lines[6])
        with open(os.path.join(job.dir, "wd", "m", "MLmodel")) as f:
            mlmodel = f.read()
        for want in ['loader_module: "mlflow.sklearn"', 'pickled_model: "model.pkl"', 'run_id: "job_1"', "  sklearn:\n", "  python_function:\n"]:
            self.assertIn(want, mlmodel)
        if has("yaml"):
            # Any YAML reader (the real mlflow's) reads the same.
            p = job.run("import yaml, json; print(json.dumps(yaml.safe_load(open('m/MLmodel')))); print(json.dumps(yaml.safe_load(open('m/conda.yaml'))))")
            doc, conda = [json.loads(line) for line in p.stdout.splitlines()]
            self.assertEqual(doc["flavors"]["python_function"]["loader_module"], "mlflow.sklearn")
            self.assertEqual(doc["flavors"]["sklearn"]["pickled_model"], "model.pkl")
            self.assertEqual(doc["flavors"]["sklearn"]["serialization_format"], "pickle")
            self.assertIsNone(doc["flavors"]["sklearn"]["code"])
            self.assertEqual(doc["metadata"], {"owner": "me"})
            self.assertEqual(conda["dependencies"][1], "pip")
            self.assertEqual(conda["dependencies"][2]["pip"][0], "mlflow")

    def test_log_model_goes_to_the_job_artifacts(self):
        job = Job(self)
        p = job.run(
            """
            import mlflow, mlflow.sklearn, toymodel
            info = mlflow.sklearn.log_model(toymodel.Doubler(), "model")
            print(info.model_uri)
            info = mlflow.sklearn.log_model(toymodel.Doubler(4), artifact_path="model", registered_model_name="doubler")
            print(mlflow.sklearn.load_model(info.model_uri).predict([1]))
            print(mlflow.pyfunc.load_model("runs:/job_1/model").predict([1]))
            try:
                mlflow.sklearn.load_model("runs:/other/model")
            except mlflow.MlflowException as e:
                print("refused", e)
            """
        )
        self.assertEqual(p.stdout.splitlines()[:3], ["runs:/job_1/model", "[4]", "[4]"])
        self.assertIn("refused runs:/other/model: only this job's run", p.stdout)
        self.assertIn("not registered as 'doubler'", p.stderr)
        self.assertIn("--path runs:/job_1/model", p.stderr)
        self.assertEqual(sorted(os.listdir(job.outputs)), ["model"])
        with open(os.path.join(job.outputs, "model", "MLmodel")) as f:
            self.assertIn('artifact_path: "model"', f.read())

    def test_scikit_learn(self):
        if not has("sklearn"):
            self.skipTest("scikit-learn is not installed")
        job = Job(self)
        p = job.run(
            """
            import mlflow
            from sklearn.linear_model import LogisticRegression
            m = LogisticRegression().fit([[0], [1], [2], [3]], [0, 0, 1, 1])
            mlflow.sklearn.save_model(sk_model=m, path="model")
            print(list(mlflow.sklearn.load_model("model").predict([[0], [3]])))
            """
        )
        self.assertEqual(p.stdout.strip(), "[0, 1]")
        with open(os.path.join(job.dir, "wd", "model", "requirements.txt")) as f:
            self.assertIn("scikit-learn==", f.read())


class StepAsideTest(unittest.TestCase):
    """When the real mlflow is installed, the stand-in steps aside."""

    def fake_mlflow(self, job):
        real = os.path.join(job.dir, "site")
        os.makedirs(os.path.join(real, "mlflow"))
        with open(os.path.join(real, "mlflow", "__init__.py"), "w") as f:
            f.write("REAL = True\n")
        with open(os.path.join(real, "mlflow", "sklearn.py"), "w") as f:
            f.write("REAL_SKLEARN = True\n")
        return real

    def test_the_real_mlflow_is_imported_instead(self):
        job = Job(self)
        real = self.fake_mlflow(job)
        for first in ("mlflow", "mlflow.sklearn"):
            with self.subTest(first=first):
                p = job.run(
                    """
                    import os, sys
                    import %s
                    import mlflow, mlflow.sklearn
                    print(mlflow.REAL, mlflow.sklearn.REAL_SKLEARN, sys.modules["mlflow"] is mlflow)
                    print(mlflow.__file__)
                    print(any(os.path.realpath(p) == os.path.realpath(%r) for p in sys.path))
                    """
                    % (first, PYLIB),
                    PYTHONPATH=os.pathsep.join([PYLIB, real]),
                )
                self.assertEqual(p.stdout.splitlines(), ["True True True", os.path.join(real, "mlflow", "__init__.py"), "False"])

    def test_alone_it_stays(self):
        job = Job(self)
        p = job.run(
            """
            import os, sys, mlflow
            print(os.path.realpath(mlflow.__file__).startswith(%r), any(os.path.realpath(p) == os.path.realpath(%r) for p in sys.path))
            """
            % (os.path.realpath(PYLIB), PYLIB),
        )
        self.assertEqual(p.stdout.strip(), "True True")


if __name__ == "__main__":
    unittest.main()
