"""Online endpoints: show, list, keys, and invoke through a router on
127.0.0.1 (plain, and HTTPS with the certificate its cluster reported)."""

import json
import os
import shutil
import tempfile
import unittest

from outpost.exceptions import HttpResponseError, ServiceRequestError
from outpost.ml import MLClient

from .fakeworkspace import FakeWorkspace, LoginEnv, have_openssl, make_cert

BASE = "/resourceGroups/rg/workspaces/ws"
KEY = "primary-key-for-test-0123456789"


class Router(FakeWorkspace):
    """A scoring router: answers what it was sent, if the key is right."""

    def __init__(self, tls=None):
        super().__init__(tls, check_token=False)
        self.route("POST", ".*", self.score)

    def score(self, r):
        if r.headers.get("authorization") != "Bearer " + KEY:
            return 401, {"message": "bad key"}
        return 200, {"got": r.json(), "deployment": r.headers.get("azureml-model-deployment")}


class Base(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="outpost-sdk-ep-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.ws = FakeWorkspace()
        self.addCleanup(self.ws.close)
        self.env = LoginEnv(self.ws.url)
        self.addCleanup(self.env.restore)
        self.ml = MLClient(resource_group_name="rg", workspace_name="ws")
        self.request = os.path.join(self.dir, "request.json")
        with open(self.request, "w") as f:
            json.dump({"data": [[1, 2]]}, f)

    def endpoint(self, scoring_uri, cert_pem="", auth_mode="key"):
        ep = {"name": "e1", "auth_mode": auth_mode, "scoring_uri": scoring_uri, "provisioning_state": "Succeeded",
              "traffic": {"blue": 100}}
        self.ws.answer("GET", BASE + "/onlineEndpoints/e1", 200, ep)
        self.ws.answer("GET", BASE + "/onlineEndpoints", 200, [ep])
        self.ws.answer("GET", BASE + "/onlineEndpoints/e1/router", 200,
                       {"baseURL": scoring_uri.split("/api")[0], "certificatePEM": cert_pem, "ready": True})
        self.ws.answer("POST", BASE + "/onlineEndpoints/e1/listKeys", 200, {"primaryKey": KEY, "secondaryKey": "k2"})
        self.ws.answer("POST", BASE + "/onlineEndpoints/e1/token", 200,
                       {"accessToken": KEY, "tokenType": "Bearer", "expiryTimeUtc": "2030-01-01T00:00:00Z"})


class EndpointTest(Base):
    def test_invoke_over_http(self):
        router = Router()
        self.addCleanup(router.close)
        self.endpoint(router.url + "/api/v1/endpoint/e1/score")
        answer = json.loads(self.ml.online_endpoints.invoke(endpoint_name="e1", request_file=self.request))
        self.assertEqual(answer, {"got": {"data": [[1, 2]]}, "deployment": None})
        answer = json.loads(self.ml.online_endpoints.invoke(endpoint_name="e1", request_file=self.request,
                                                            deployment_name="green"))
        self.assertEqual(answer["deployment"], "green")
        self.assertEqual(router.requests[0].path, "/api/v1/endpoint/e1/score")

    def test_aml_token(self):
        router = Router()
        self.addCleanup(router.close)
        self.endpoint(router.url + "/api/v1/endpoint/e1/score", auth_mode="aml_token")
        self.ml.online_endpoints.invoke(endpoint_name="e1", request_file=self.request)
        self.assertEqual(len(self.ws.sent("POST", BASE + "/onlineEndpoints/e1/token")), 1)
        self.assertEqual(self.ws.sent("POST", BASE + "/onlineEndpoints/e1/listKeys"), [])

    def test_refusal_carries_status_and_body(self):
        router = Router()
        self.addCleanup(router.close)
        self.endpoint(router.url + "/api/v1/endpoint/e1/score")
        self.ws.answer("POST", BASE + "/onlineEndpoints/e1/listKeys", 200, {"primaryKey": "wrong", "secondaryKey": ""})
        with self.assertRaises(HttpResponseError) as cm:
            self.ml.online_endpoints.invoke(endpoint_name="e1", request_file=self.request)
        self.assertIn("answered 401 Unauthorized", str(cm.exception))
        self.assertIn("bad key", str(cm.exception))

    def test_no_scoring_uri(self):
        self.endpoint("")
        self.ws.answer("GET", BASE + "/onlineEndpoints/e1", 200, {"name": "e1", "status_message": "no router yet"})
        with self.assertRaises(HttpResponseError) as cm:
            self.ml.online_endpoints.invoke(endpoint_name="e1", request_file=self.request)
        self.assertIn("has no scoring URI yet", str(cm.exception))

    def test_get_list_keys_deployments(self):
        self.endpoint("http://127.0.0.1:1/api/v1/endpoint/e1/score")
        e = self.ml.online_endpoints.get("e1")
        self.assertEqual((e.name, e.traffic, e.provisioning_state, e.description), ("e1", {"blue": 100}, "Succeeded", None))
        self.assertEqual([x.name for x in self.ml.online_endpoints.list()], ["e1"])
        keys = self.ml.online_endpoints.get_keys("e1")
        self.assertEqual(keys.primary_key, KEY)
        self.assertNotIn(KEY, repr(keys))
        self.ws.answer("GET", BASE + "/onlineEndpoints/e1/deployments/blue", 200,
                       {"name": "blue", "provisioning_state": "Succeeded", "instance_count": 1})
        self.ws.answer("GET", BASE + "/onlineEndpoints/e1/deployments", 200, [{"name": "blue"}])
        self.ws.answer("GET", BASE + "/onlineEndpoints/e1/deployments/blue/logs", 200, {"instance": "i", "content": "log\n"})
        d = self.ml.online_deployments.get("blue", "e1")
        self.assertEqual((d.name, d.instance_count), ("blue", 1))
        self.assertEqual([x.name for x in self.ml.online_deployments.list("e1")], ["blue"])
        self.assertEqual(self.ml.online_deployments.get_logs("blue", "e1", lines=10), "log\n")


@unittest.skipUnless(have_openssl(), "openssl makes the test certificates")
class PinnedRouterTest(Base):
    def test_pinned_certificate_trusted_without_its_name(self):
        # The router's certificate names another host: only the pin makes it trusted.
        cert, key = make_cert(self.dir, "router", "DNS:router.invalid")
        router = Router(tls=(cert, key))
        self.addCleanup(router.close)
        with open(cert) as f:
            self.endpoint(router.url + "/api/v1/endpoint/e1/score", f.read())
        answer = json.loads(self.ml.online_endpoints.invoke(endpoint_name="e1", request_file=self.request))
        self.assertEqual(answer["got"], {"data": [[1, 2]]})

    def test_other_certificate_refused_before_the_key_is_sent(self):
        cert, key = make_cert(self.dir, "router", "IP:127.0.0.1")
        other, _ = make_cert(self.dir, "other", "IP:127.0.0.1")
        router = Router(tls=(cert, key))
        self.addCleanup(router.close)
        with open(other) as f:
            self.endpoint(router.url + "/api/v1/endpoint/e1/score", f.read())
        with self.assertRaises(ServiceRequestError) as cm:
            self.ml.online_endpoints.invoke(endpoint_name="e1", request_file=self.request)
        self.assertIn("neither the one its cluster reported nor trusted", str(cm.exception))
        self.assertEqual(router.requests, [])


if __name__ == "__main__":
    unittest.main()
