"""The login, the workspace config, the connection and its errors."""

import json
import os
import shutil
import tempfile
import unittest

from outpost import _client
from outpost.core.workspace import Workspace
from outpost.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    UserErrorException,
)
from outpost.ml import DefaultAzureCredential, MLClient

from .fakeworkspace import TOKEN, FakeWorkspace, LoginEnv, have_openssl, make_cert


class TempDir(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="outpost-sdk-test-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.saved = {k: os.environ.get(k) for k in LoginEnv.KEYS}
        for k in LoginEnv.KEYS:
            os.environ.pop(k, None)
        self.addCleanup(self.restore)

    def restore(self):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class LoginTest(TempDir):
    def write_login(self, **fields):
        p = os.path.join(self.dir, "config.json")
        with open(p, "w") as f:
            json.dump(fields, f)
        os.environ["OUTPOST_CONFIG"] = p
        return p

    def test_stored_login(self):
        self.write_login(url="https://127.0.0.1:8443/", token="t" * 40, ca="PEM")
        login = _client.load_login()
        self.assertEqual((login.url, login.token, login.ca), ("https://127.0.0.1:8443", "t" * 40, "PEM"))

    def test_environment_overrides(self):
        self.write_login(url="https://127.0.0.1:8443", token="t" * 40, ca="PEM")
        ca = os.path.join(self.dir, "ca.crt")
        with open(ca, "w") as f:
            f.write("OTHER PEM")
        os.environ.update(OUTPOST_URL="https://127.0.0.1:9443", OUTPOST_TOKEN="u" * 40, OUTPOST_CA_FILE=ca)
        login = _client.load_login()
        self.assertEqual((login.url, login.token, login.ca), ("https://127.0.0.1:9443", "u" * 40, "OTHER PEM"))

    def test_arguments_first(self):
        self.write_login(url="https://127.0.0.1:8443", token="t" * 40, ca="PEM")
        login = _client.load_login(url="http://127.0.0.1:1", token="v" * 40)
        self.assertEqual((login.url, login.token, login.ca), ("http://127.0.0.1:1", "v" * 40, None))

    def test_not_logged_in(self):
        os.environ["OUTPOST_CONFIG"] = os.path.join(self.dir, "missing.json")
        with self.assertRaises(UserErrorException) as cm:
            _client.load_login()
        self.assertIn("outpost login", str(cm.exception))

    def test_broken_login(self):
        p = self.write_login()
        with open(p, "w") as f:
            f.write("{not json")
        with self.assertRaises(UserErrorException) as cm:
            _client.load_login()
        self.assertTrue(str(cm.exception).startswith(p + ": "))

    def test_token_never_shown(self):
        self.write_login(url="https://127.0.0.1:8443", token="secret-token-" + "x" * 30)
        login = _client.load_login()
        self.assertNotIn("secret-token", repr(login))
        self.assertNotIn("secret-token", repr(_client.Connection(login)))

    def test_default_path(self):
        os.environ.pop("OUTPOST_CONFIG", None)
        self.assertEqual(_client.login_path(), os.path.join(os.path.expanduser("~"), ".outpost", "config.json"))


class WorkspaceConfigTest(TempDir):
    def write(self, rel, cfg):
        p = os.path.join(self.dir, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            json.dump(cfg, f)
        return p

    def test_found_in_parents(self):
        p = self.write("config.json", {"subscription_id": "s", "resource_group": "rg", "workspace_name": "ws"})
        deep = os.path.join(self.dir, "a", "b")
        os.makedirs(deep)
        cfg, where = _client.find_workspace_config(deep)
        self.assertEqual(where, p)
        self.assertEqual(_client.workspace_from_config(cfg, where), ("s", "rg", "ws"))

    def test_azureml_folder(self):
        p = self.write(".azureml/config.json", {"resource_group": "rg", "workspace_name": "ws"})
        self.assertEqual(_client.find_workspace_config(self.dir)[1], p)

    def test_file_given(self):
        p = self.write("my.json", {"resource_group": "rg", "workspace_name": "ws"})
        self.assertEqual(_client.find_workspace_config(p)[1], p)

    def test_missing_fields(self):
        p = self.write("config.json", {"resource_group": "rg"})
        cfg, where = _client.find_workspace_config(self.dir)
        with self.assertRaises(UserErrorException) as cm:
            _client.workspace_from_config(cfg, where)
        self.assertEqual(str(cm.exception), f"workspace config {p}: workspace_name missing")

    def test_none_found(self):
        with self.assertRaises(UserErrorException) as cm:
            _client.find_workspace_config(self.dir, "nothing-here.json")
        self.assertIn("no workspace config found", str(cm.exception))


class ConnectionTest(unittest.TestCase):
    def setUp(self):
        self.ws = FakeWorkspace()
        self.addCleanup(self.ws.close)
        self.login = _client.Login(self.ws.url, TOKEN)

    def test_errors_carry_the_workspace_message(self):
        conn = _client.Connection(self.login)
        self.ws.answer("PUT", "/x", 400, {"code": "InvalidConfiguration", "message": "--namespace \"A\": bad"})
        with self.assertRaises(HttpResponseError) as cm:
            conn.call("PUT", "/x", {"a": 1})
        e = cm.exception
        self.assertEqual((e.message, e.code, e.status_code), ('--namespace "A": bad', "InvalidConfiguration", 400))
        with self.assertRaises(ResourceNotFoundError) as cm:
            conn.call("GET", "/nothing")
        self.assertEqual(cm.exception.message, "no route GET /nothing")
        self.ws.answer("GET", "/plain", 502, b"bad gateway")
        with self.assertRaises(HttpResponseError) as cm:
            conn.call("GET", "/plain")
        self.assertEqual(cm.exception.message, "GET /plain: 502 Bad Gateway")

    def test_wrong_token(self):
        conn = _client.Connection(_client.Login(self.ws.url, "wrong-" + "x" * 40))
        with self.assertRaises(ClientAuthenticationError) as cm:
            conn.call("GET", "/x")
        self.assertEqual(cm.exception.status_code, 401)

    def test_bearer_json_and_kept_connection(self):
        conn = _client.Connection(self.login)
        self.ws.answer("PUT", "/thing", 200, {"ok": True})
        self.assertEqual(conn.call("PUT", "/thing", {"n": 1.5}), {"ok": True})
        self.assertEqual(conn.call("PUT", "/thing", {"n": 2}), {"ok": True})
        req = self.ws.sent("PUT", "/thing")[0]
        self.assertEqual(req.headers["authorization"], "Bearer " + TOKEN)
        self.assertEqual(req.headers["content-type"], "application/json")
        self.assertEqual(req.body, b'{"n":1.5}')
        self.assertEqual(self.ws.connections, 1)

    def test_unreachable(self):
        url = self.ws.url
        self.ws.close()
        conn = _client.Connection(_client.Login(url, TOKEN), timeout=5)
        with self.assertRaises(ServiceRequestError) as cm:
            conn.call("GET", "/x")
        self.assertIn(url, str(cm.exception))
        self.assertFalse(cm.exception.maybe_applied)
        self.ws = FakeWorkspace()  # for the cleanup

    def test_bad_url(self):
        with self.assertRaises(UserErrorException):
            _client.Connection(_client.Login("127.0.0.1:8443", TOKEN))


@unittest.skipUnless(have_openssl(), "openssl makes the test certificates")
class TLSTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="outpost-sdk-test-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.cert, key = make_cert(self.dir, "workspace", "IP:127.0.0.1")
        self.ws = FakeWorkspace(tls=(self.cert, key))
        self.addCleanup(self.ws.close)
        self.ws.answer("GET", "/resourceGroups/rg/workspaces/ws", 200, {"name": "ws", "resource_group": "rg"})

    def test_trusts_the_login_ca(self):
        with open(self.cert) as f:
            pem = f.read()
        conn = _client.Connection(_client.Login(self.ws.url, TOKEN, pem))
        self.assertEqual(conn.call("GET", "/resourceGroups/rg/workspaces/ws")["name"], "ws")
        ws = Workspace(resource_group="rg", workspace_name="ws", url=self.ws.url, token=TOKEN, ca_file=self.cert)
        self.assertEqual(ws.get_details()["name"], "ws")

    def test_refuses_an_untrusted_workspace(self):
        other, _ = make_cert(self.dir, "other", "IP:127.0.0.1")
        with open(other) as f:
            pem = f.read()
        conn = _client.Connection(_client.Login(self.ws.url, TOKEN, pem))
        with self.assertRaises(ServiceRequestError) as cm:
            conn.call("GET", "/resourceGroups/rg/workspaces/ws")
        self.assertIn("not trusted", str(cm.exception))
        self.assertEqual(self.ws.requests, [])


class ClientsTest(unittest.TestCase):
    def setUp(self):
        self.ws = FakeWorkspace()
        self.addCleanup(self.ws.close)
        self.env = LoginEnv(self.ws.url)
        self.addCleanup(self.env.restore)

    def test_workspace_checks_the_login(self):
        self.ws.answer("GET", "/resourceGroups/rg/workspaces/ws", 200, {"name": "ws", "resource_group": "rg"})
        ws = Workspace(resource_group="rg", workspace_name="ws")
        self.assertEqual((ws.name, ws.resource_group), ("ws", "rg"))
        os.environ["OUTPOST_TOKEN"] = "wrong-" + "x" * 40
        with self.assertRaises(ClientAuthenticationError):
            Workspace(resource_group="rg", workspace_name="ws")

    def test_from_config(self):
        self.ws.answer("GET", "/resourceGroups/g1/workspaces/w1", 200, {"name": "w1", "resource_group": "g1"})
        d = os.path.join(self.env.dir, "proj")
        os.makedirs(os.path.join(d, ".azureml"))
        with open(os.path.join(d, ".azureml", "config.json"), "w") as f:
            json.dump({"subscription_id": "sub", "resource_group": "g1", "workspace_name": "w1"}, f)
        ws = Workspace.from_config(path=d)
        self.assertEqual((ws.subscription_id, ws.resource_group, ws.name), ("sub", "g1", "w1"))
        ml = MLClient.from_config(DefaultAzureCredential(), path=d)
        self.assertEqual((ml.resource_group_name, ml.workspace_name), ("g1", "w1"))

    def test_azure_credentials_refused(self):
        with self.assertRaises(UserErrorException):
            MLClient(object(), "sub", "rg", "ws")
        with self.assertRaises(UserErrorException):
            Workspace("sub", "rg", "ws", auth=object())

    def test_names_required(self):
        with self.assertRaises(UserErrorException):
            MLClient(resource_group_name="rg")
        with self.assertRaises(UserErrorException):
            Workspace(resource_group="rg")


if __name__ == "__main__":
    unittest.main()
