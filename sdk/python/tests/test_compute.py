"""Attaching, fetching and detaching Kubernetes compute (outpost.core), and
the seed's script run against a fake workspace."""

import ast
import io
import json
import os
import runpy
import unittest
from contextlib import redirect_stdout

from outpost.core.compute import ComputeTarget, KubernetesCompute
from outpost.core.workspace import Workspace
from outpost.exceptions import ComputeTargetException

from .fakeworkspace import FakeWorkspace, LoginEnv

HERE = os.path.dirname(os.path.abspath(__file__))
BASE = "/resourceGroups/rg/workspaces/ws"
CLUSTER = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Kubernetes/connectedClusters/c1"


class ComputeWorkspace:
    """Computes that are Creating for `polls` GETs, then Succeeded (or Failed with `errors`)."""

    def __init__(self, ws: FakeWorkspace, polls: int = 2, errors=None) -> None:
        self.computes = {}
        self.polls = polls
        self.errors = errors
        ws.answer("GET", BASE, 200, {"name": "ws", "resource_group": "rg"})
        ws.route("PUT", BASE + "/computes/([^/]+)", self.put)
        ws.route("GET", BASE + "/computes/([^/]+)", self.get)
        ws.route("DELETE", BASE + "/computes/([^/]+)", self.delete)
        ws.route("GET", BASE + "/computes", lambda r: (200, [self.view(n) for n in self.computes]))

    def view(self, name):
        c = self.computes[name]
        req = c["req"]
        state = "Creating"
        out = {"id": f"{BASE}/computes/{name}", "name": name, "resourceGroup": "rg", "workspace": "ws",
               "type": "Kubernetes", "resourceId": req["resourceId"], "namespace": req["namespace"],
               "identity": {"type": req["identityType"] or "SystemAssigned"}}
        if req["userAssignedIdentities"]:
            out["identity"]["userAssignedIdentities"] = req["userAssignedIdentities"][:1]
        if out["identity"]["type"] == "SystemAssigned":
            out["identity"]["principalId"] = "0b1c2d3e-aaaa-bbbb-cccc-0123456789ab"
        if c["gets"] >= self.polls:
            state = "Failed" if self.errors else "Succeeded"
            if self.errors:
                out["provisioningErrors"] = self.errors
        out["provisioningState"] = state
        return out

    def put(self, r):
        name = r.path.rsplit("/", 1)[1]
        if name in self.computes:
            return 409, {"code": "Conflict", "message": f"compute {name} exists"}
        self.computes[name] = {"req": r.json(), "gets": 0}
        return 201, self.view(name)

    def get(self, r):
        name = r.path.rsplit("/", 1)[1]
        if name not in self.computes:
            return 404, {"code": "NotFound", "message": f"compute {name} not found"}
        self.computes[name]["gets"] += 1
        return 200, self.view(name)

    def delete(self, r):
        name = r.path.rsplit("/", 1)[1]
        if self.computes.pop(name, None) is None:
            return 404, {"code": "NotFound", "message": f"compute {name} not found"}
        return 204, None


class ComputeTest(unittest.TestCase):
    def setUp(self):
        self.ws = FakeWorkspace()
        self.addCleanup(self.ws.close)
        self.env = LoginEnv(self.ws.url)
        self.addCleanup(self.env.restore)

    def test_attach_wait_status_detach(self):
        ComputeWorkspace(self.ws)
        ws = Workspace(resource_group="rg", workspace_name="ws")
        cfg = KubernetesCompute.attach_configuration(resource_id=CLUSTER, namespace="team-a",
                                                     identity_type="SystemAssigned")
        c = ComputeTarget.attach(ws, "k8s", cfg)
        self.assertIs(type(c), KubernetesCompute)
        self.assertEqual(c.provisioning_state, "Creating")
        self.assertEqual(self.ws.sent("PUT", BASE + "/computes/k8s")[0].json(),
                         {"type": "Kubernetes", "resourceId": CLUSTER, "namespace": "team-a",
                          "identityType": "SystemAssigned", "userAssignedIdentities": None, "createNamespace": False})
        out = io.StringIO()
        with redirect_stdout(out):
            c.wait_for_completion(show_output=True)
        self.assertEqual(out.getvalue(), 'Creating.\nSucceeded\nProvisioning operation finished, operation "Succeeded"\n')
        status = c.get_status().serialize()
        self.assertEqual(status["provisioningState"], "Succeeded")
        self.assertEqual(status["identity"], {"type": "SystemAssigned", "principalId": "0b1c2d3e-aaaa-bbbb-cccc-0123456789ab"})
        self.assertEqual((status["resourceId"], status["properties"]["namespace"]), (CLUSTER, "team-a"))
        self.assertEqual(c.principal_id, "0b1c2d3e-aaaa-bbbb-cccc-0123456789ab")

        targets = ws.compute_targets
        self.assertEqual(list(targets), ["k8s"])
        self.assertIs(type(targets["k8s"]), KubernetesCompute)
        fetched = ComputeTarget(workspace=ws, name="k8s")
        self.assertIs(type(fetched), KubernetesCompute)
        self.assertEqual(fetched.namespace, "team-a")

        fetched.detach()
        self.assertNotIn("k8s", ws.compute_targets)
        with self.assertRaises(ComputeTargetException) as cm:
            ComputeTarget(workspace=ws, name="k8s")
        self.assertIn("compute k8s not found", str(cm.exception))
        self.assertEqual(cm.exception.status_code, 404)

    def test_failed_attach_raises_with_the_reason(self):
        ComputeWorkspace(self.ws, polls=1, errors=["connected cluster c9 of resource group rg does not exist"])
        ws = Workspace(resource_group="rg", workspace_name="ws")
        c = ComputeTarget.attach(ws, "k8s", KubernetesCompute.attach_configuration(resource_id=CLUSTER))
        with self.assertRaises(ComputeTargetException) as cm:
            c.wait_for_completion()
        self.assertIn("current provisioning state: Failed", str(cm.exception))
        self.assertIn("connected cluster c9 of resource group rg does not exist", str(cm.exception))
        self.assertEqual(cm.exception.provisioning_errors, ["connected cluster c9 of resource group rg does not exist"])
        status = c.get_status().serialize()
        self.assertEqual(status["provisioningErrors"],
                         [{"error": {"message": "connected cluster c9 of resource group rg does not exist"}}])

    def test_refused_attach_carries_the_message(self):
        ComputeWorkspace(self.ws)
        self.ws.answer("PUT", BASE + "/computes/bad", 400,
                       {"code": "InvalidConfiguration", "message": '--namespace "Bad_NS": a lowercase RFC 1123 label must ...'})
        ws = Workspace(resource_group="rg", workspace_name="ws")
        with self.assertRaises(ComputeTargetException) as cm:
            ComputeTarget.attach(ws, "bad", KubernetesCompute.attach_configuration(resource_id=CLUSTER, namespace="Bad_NS"))
        self.assertEqual(cm.exception.message, '--namespace "Bad_NS": a lowercase RFC 1123 label must ...')
        self.assertEqual((cm.exception.code, cm.exception.status_code), ("InvalidConfiguration", 400))

    def test_configuration_checks(self):
        with self.assertRaises(ComputeTargetException):
            KubernetesCompute.attach_configuration(resource_id=CLUSTER, default_instance_type="big")
        ComputeWorkspace(self.ws)
        ws = Workspace(resource_group="rg", workspace_name="ws")
        with self.assertRaises(ComputeTargetException):
            ComputeTarget.attach(ws, "x", KubernetesCompute.attach_configuration(namespace="default"))
        self.assertEqual(self.ws.sent("PUT", BASE + "/computes/x"), [])

    def test_wait_timeout(self):
        ComputeWorkspace(self.ws, polls=1000)
        ws = Workspace(resource_group="rg", workspace_name="ws")
        c = ComputeTarget.attach(ws, "slow", KubernetesCompute.attach_configuration(resource_id=CLUSTER))
        with self.assertRaises(ComputeTargetException) as cm:
            c.wait_for_completion(timeout_sec=0.5)
        self.assertIn("still Creating", str(cm.exception))

    def test_seed_script(self):
        """The seed's script, only its imports changed, with values for its placeholders."""
        ComputeWorkspace(self.ws)
        with open(os.path.join(HERE, "..", "examples", "attach_kubernetes.py")) as f:
            script = f.read()
        self.assertIn("from outpost.core.compute import KubernetesCompute\n", script)
        script = (script.replace("<COMPUTE_CLUSTER_NAME>", "amlarc-compute").replace("<sub ID>", "s1")
                  .replace("<RG>", "rg").replace("<cluster name>", "c1").replace("<identity name>", "id1"))
        d = os.path.join(self.env.dir, "project")
        os.makedirs(d)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump({"subscription_id": "s1", "resource_group": "rg", "workspace_name": "ws"}, f)
        path = os.path.join(d, "attach.py")
        with open(path, "w") as f:
            f.write(script)
        cwd = os.getcwd()
        os.chdir(d)
        out = io.StringIO()
        try:
            with redirect_stdout(out):
                runpy.run_path(path, run_name="__main__")
        finally:
            os.chdir(cwd)
        text = out.getvalue()
        self.assertIn("creating new compute target...\nCreating", text)
        self.assertIn('Provisioning operation finished, operation "Succeeded"', text)
        status = ast.literal_eval(text.strip().splitlines()[-1])  # the script prints the dict
        self.assertEqual(status["identity"]["type"], "UserAssigned")
        self.assertEqual(list(status["identity"]["userAssignedIdentities"]),
                         ["subscriptions/s1/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1"])
        req = self.ws.sent("PUT", BASE + "/computes/amlarc-compute")[0].json()
        self.assertEqual((req["identityType"], req["namespace"], req["resourceId"]),
                         ("UserAssigned", "default", CLUSTER))


if __name__ == "__main__":
    unittest.main()
