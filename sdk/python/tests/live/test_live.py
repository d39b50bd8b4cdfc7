"""The SDK against a real workspace and cluster: run by e2e/sdk, which serves
a workspace, connects the local cluster, installs the ML extension, logs in
and sets:

    OUTPOST_CONFIG               the login (`outpost login` wrote it)
    OUTPOST_SDK_LIVE_RG          the resource group of the workspace and the cluster
    OUTPOST_SDK_LIVE_WORKSPACE   the workspace name
    OUTPOST_SDK_LIVE_CLUSTER_ID  the connected cluster's resource id (Azure's form)
    OUTPOST_SDK_LIVE_EXAMPLES    the repository's examples/ folder
    OUTPOST_SDK_LIVE_ENDPOINT    an online endpoint with a deployment taking traffic
    OUTPOST_SDK_LIVE_REQUEST     a request file for it

Without them every case is skipped. The cases run in order (their names
say it) and print what e2e/sdk checks against the CLI: ``SDK-LIVE-PRINCIPAL <id>``,
``SDK-LIVE-JOB <name>``, ``SDK-LIVE-FAILED-ATTACH <message>``, ``SDK-LIVE-ANSWER <answer>``.
"""

import ast
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from contextlib import redirect_stderr, redirect_stdout

from outpost.core.compute import ComputeTarget, KubernetesCompute
from outpost.core.workspace import Workspace
from outpost.exceptions import ComputeTargetException, JobException
from outpost.ml import MLClient, load_job

ENV = ("OUTPOST_CONFIG", "OUTPOST_SDK_LIVE_RG", "OUTPOST_SDK_LIVE_WORKSPACE", "OUTPOST_SDK_LIVE_CLUSTER_ID",
       "OUTPOST_SDK_LIVE_EXAMPLES", "OUTPOST_SDK_LIVE_ENDPOINT", "OUTPOST_SDK_LIVE_REQUEST")
LIVE = all(os.environ.get(k) for k in ENV)
HERE = os.path.dirname(os.path.abspath(__file__))
SEED_COMPUTE = "amlarc-compute"
SYSTEM_COMPUTE = "sdk-system"
JOB_COMPUTE = "local-compute"  # the examples' jobs run on it; e2e/sdk attached it


@unittest.skipUnless(LIVE, "live: run by e2e/sdk against a workspace (" + ", ".join(ENV) + ")")
class LiveTest(unittest.TestCase):
    project = ""

    @classmethod
    def setUpClass(cls):
        # A folder with the workspace's config.json, as a data scientist has.
        cls.project = tempfile.mkdtemp(prefix="outpost-sdk-live-")
        with open(os.path.join(cls.project, "config.json"), "w") as f:
            json.dump({"subscription_id": "00000000-0000-0000-0000-000000000000",
                       "resource_group": os.environ["OUTPOST_SDK_LIVE_RG"],
                       "workspace_name": os.environ["OUTPOST_SDK_LIVE_WORKSPACE"]}, f)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.project, ignore_errors=True)

    def test_1_seed_script(self):
        """The seed's script, only its imports changed, attaches the cluster with a user-assigned identity."""
        with open(os.path.join(HERE, "..", "..", "examples", "attach_kubernetes.py")) as f:
            script = f.read()
        cluster = os.environ["OUTPOST_SDK_LIVE_CLUSTER_ID"]
        script = script.replace("<COMPUTE_CLUSTER_NAME>", SEED_COMPUTE).replace(
            "/subscriptions/<sub ID>/resourceGroups/<RG>/providers/Microsoft.Kubernetes/connectedClusters/<cluster name>",
            cluster).replace("<sub ID>", "00000000-0000-0000-0000-000000000000").replace(
            "<RG>", os.environ["OUTPOST_SDK_LIVE_RG"]).replace("<identity name>", "sdk-identity")
        path = os.path.join(self.project, "attach.py")
        with open(path, "w") as f:
            f.write(script)
        p = subprocess.run([sys.executable, path], cwd=self.project, capture_output=True, text=True, timeout=120)
        print(p.stdout, end="")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("creating new compute target...\nCreating", p.stdout)
        self.assertIn('Provisioning operation finished, operation "Succeeded"', p.stdout)
        status = ast.literal_eval(p.stdout.strip().splitlines()[-1])
        self.assertEqual(status["provisioningState"], "Succeeded")
        self.assertEqual(status["resourceId"], cluster)
        self.assertEqual(status["identity"]["type"], "UserAssigned")
        self.assertEqual(len(status["identity"]["userAssignedIdentities"]), 1)
        # The principal id the seed prints the status for: the identity's own.
        (ids,) = status["identity"]["userAssignedIdentities"].values()
        self.assertRegex(ids.get("principalId", ""), r"^[0-9a-f-]{36}$")
        self.assertRegex(ids.get("clientId", ""), r"^[0-9a-f-]{36}$")

    def test_2_compute_targets(self):
        ws = Workspace.from_config(path=self.project)
        targets = ws.compute_targets
        self.assertIn(SEED_COMPUTE, targets)
        self.assertIs(type(targets[SEED_COMPUTE]), KubernetesCompute)
        c = ComputeTarget(workspace=ws, name=SEED_COMPUTE)
        self.assertIs(type(c), KubernetesCompute)
        self.assertEqual((c.provisioning_state, c.namespace), ("Succeeded", "default"))
        self.assertIn("defaultinstancetype", c.instance_types)

    def test_3_system_assigned(self):
        """The seed's other identity: system-assigned, whose principal id the status shows."""
        ws = Workspace.from_config(path=self.project)
        cfg = KubernetesCompute.attach_configuration(resource_id=os.environ["OUTPOST_SDK_LIVE_CLUSTER_ID"], namespace="default",
                                                     identity_type="SystemAssigned")
        c = ComputeTarget.attach(ws, SYSTEM_COMPUTE, cfg)
        out = io.StringIO()
        with redirect_stdout(out):
            c.wait_for_completion(show_output=True, timeout_sec=120)
        print(out.getvalue(), end="")
        self.assertTrue(out.getvalue().startswith("Creating"), out.getvalue())
        status = c.get_status().serialize()
        print(status)
        self.assertEqual(status["identity"]["type"], "SystemAssigned")
        self.assertRegex(status["identity"]["principalId"], r"^[0-9a-f-]{36}$")
        print("SDK-LIVE-PRINCIPAL " + status["identity"]["principalId"])

    def test_4_failed_attach(self):
        """A cluster the workspace does not know: the attach fails with the workspace's reason."""
        ws = Workspace.from_config(path=self.project)
        rg = os.environ["OUTPOST_SDK_LIVE_RG"]
        cfg = KubernetesCompute.attach_configuration(resource_id=f"/resourceGroups/{rg}/connectedClusters/no-such-cluster")
        with self.assertRaises(ComputeTargetException) as cm:
            c = ComputeTarget.attach(ws, "sdk-failed", cfg)
            c.wait_for_completion(show_output=True, timeout_sec=120)
        e = cm.exception
        reason = e.provisioning_errors[0] if e.provisioning_errors else e.message
        self.assertIn("no-such-cluster", reason)
        print("SDK-LIVE-FAILED-ATTACH " + reason.replace("\n", " "))

    def test_5_job_streams_to_completed(self):
        ml_client = MLClient.from_config(path=self.project)
        job = ml_client.jobs.create_or_update(
            load_job(os.path.join(os.environ["OUTPOST_SDK_LIVE_EXAMPLES"], "jobs", "hello-world", "job.yml")))
        print("SDK-LIVE-JOB " + job.name)
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            ml_client.jobs.stream(job.name)
        print(out.getvalue() + err.getvalue(), end="")
        self.assertIn("hello world", out.getvalue())
        self.assertIn("Execution Summary", out.getvalue())
        self.assertIn("[Completed]", err.getvalue())
        got = ml_client.jobs.get(job.name)
        self.assertEqual((got.status, got.display_name, got.compute, got.experiment_name),
                         ("Completed", "hello-world", JOB_COMPUTE, "hello-world"))

    def test_6_failed_job_raises(self):
        ml_client = MLClient.from_config(path=self.project)
        job_file = os.path.join(self.project, "fail.yml")
        with open(job_file, "w") as f:
            f.write("command: echo about to fail && exit 3\nenvironment:\n  image: library/python:latest\n"
                    f"compute: azureml:{JOB_COMPUTE}\n")
        job = ml_client.jobs.create_or_update(load_job(job_file), experiment_name="sdk-live")
        out, err = io.StringIO(), io.StringIO()
        with self.assertRaises(JobException) as cm, redirect_stdout(out), redirect_stderr(err):
            ml_client.jobs.stream(job.name)
        print(out.getvalue() + err.getvalue() + "raised: " + str(cm.exception))
        self.assertEqual(cm.exception.status, "Failed")
        self.assertIn("about to fail", out.getvalue())
        self.assertEqual(ml_client.jobs.get(job.name).status, "Failed")

    def test_7_invoke(self):
        """The endpoint answers through its cluster's router, trusted by the certificate the cluster reported."""
        ml_client = MLClient.from_config(path=self.project)
        name = os.environ["OUTPOST_SDK_LIVE_ENDPOINT"]
        endpoint = ml_client.online_endpoints.get(name)
        self.assertEqual(endpoint.provisioning_state, "Succeeded")
        self.assertTrue(endpoint.scoring_uri.startswith("https://"), endpoint.scoring_uri)
        self.assertIn(name, [e.name for e in ml_client.online_endpoints.list()])
        deployments = ml_client.online_deployments.list(endpoint_name=name)
        self.assertEqual([d.provisioning_state for d in deployments], ["Succeeded"])
        answer = ml_client.online_endpoints.invoke(endpoint_name=name, request_file=os.environ["OUTPOST_SDK_LIVE_REQUEST"])
        self.assertEqual(len(json.loads(answer)), 2)
        answer_to = ml_client.online_endpoints.invoke(endpoint_name=name, request_file=os.environ["OUTPOST_SDK_LIVE_REQUEST"],
                                                      deployment_name=deployments[0].name)
        self.assertEqual(answer_to, answer)
        print("SDK-LIVE-ANSWER " + answer.strip())

    def test_8_detach(self):
        ws = Workspace.from_config(path=self.project)
        ComputeTarget(workspace=ws, name=SEED_COMPUTE).detach()
        self.assertNotIn(SEED_COMPUTE, ws.compute_targets)
        with self.assertRaises(ComputeTargetException) as cm:
            ComputeTarget(workspace=ws, name=SEED_COMPUTE)
        self.assertEqual(cm.exception.status_code, 404)


if __name__ == "__main__":
    unittest.main()
