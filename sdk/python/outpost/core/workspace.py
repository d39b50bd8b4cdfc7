"""The workspace, as ``azureml.core.workspace.Workspace`` spells it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional

from .._client import (
    Connection,
    find_workspace_config,
    load_login,
    quote,
    workspace_from_config,
    workspace_path,
)
from ..exceptions import UserErrorException

if TYPE_CHECKING:
    from .compute import ComputeTarget

__all__ = ["Workspace"]


class Workspace:
    """A workspace of an Outpost server: a resource group and a workspace name on it.

    The connection (URL, token, CA) is what ``outpost login`` stored, unless
    ``url``, ``token`` and ``ca_file`` (or ``ca``, the PEM itself) are given.
    ``subscription_id`` is kept for scripts written for Azure; Outpost has no
    subscriptions. Unless ``_disable_service_check`` is set, the workspace is
    called once to check the login.

    Example::

        ws = Workspace(resource_group="rg", workspace_name="ws")
        ws = Workspace.from_config()      # ./config.json, as azureml finds it
    """

    def __init__(self, subscription_id: Optional[str] = None, resource_group: Optional[str] = None,
                 workspace_name: Optional[str] = None, auth: Any = None, _location: Optional[str] = None,
                 _disable_service_check: bool = False, *, url: Optional[str] = None, token: Optional[str] = None,
                 ca_file: Optional[str] = None, ca: Optional[str] = None) -> None:
        if auth is not None:
            # An Azure credential has no meaning to an Outpost workspace; one
            # silently ignored would look as if it had been used.
            raise UserErrorException("auth: Outpost workspaces take the token `outpost login` stored "
                                     "(or url=, token=, ca_file=), not an Azure authentication object")
        if not resource_group or not workspace_name:
            raise UserErrorException("Workspace needs resource_group and workspace_name "
                                     "(or use Workspace.from_config() with a config.json)")
        self._subscription_id = subscription_id
        self._resource_group = resource_group
        self._workspace_name = workspace_name
        self._location = _location
        self._conn = Connection(load_login(url, token, ca_file, ca))
        self._details: Optional[Dict[str, Any]] = None
        if not _disable_service_check:
            self._details = self._conn.call("GET", self._path())

    @staticmethod
    def from_config(path: Optional[str] = None, auth: Any = None, _logger: Any = None,
                    _file_name: Optional[str] = None) -> "Workspace":
        """The workspace named by a config.json, with the stored login.

        path is the config file or the folder to start searching from (the
        current folder by default); each folder up to the root is searched
        for ``config.json`` and ``.azureml/config.json``, as azureml does.
        The file holds ``resource_group`` and ``workspace_name``
        (``subscription_id`` is optional).
        """
        cfg, where = find_workspace_config(path, _file_name)
        sub, rg, name = workspace_from_config(cfg, where)
        return Workspace(sub, rg, name, auth=auth)

    @staticmethod
    def get(name: str, auth: Any = None, subscription_id: Optional[str] = None,
            resource_group: Optional[str] = None, **kwargs: Any) -> "Workspace":
        """The workspace ``name`` of ``resource_group``, with the stored login."""
        return Workspace(subscription_id, resource_group, name, auth=auth, **kwargs)

    def _path(self) -> str:
        return workspace_path(self._resource_group, self._workspace_name)

    def _compute_path(self, name: str) -> str:
        return self._path() + "/computes/" + quote(name)

    @property
    def name(self) -> str:
        """The workspace's name."""
        return self._workspace_name

    @property
    def resource_group(self) -> str:
        """The workspace's resource group."""
        return self._resource_group

    @property
    def subscription_id(self) -> Optional[str]:
        """The subscription id of the config, if it had one (Outpost does not use it)."""
        return self._subscription_id

    @property
    def location(self) -> Optional[str]:
        return self._location

    @property
    def service_url(self) -> str:
        """The URL of the workspace's server."""
        return self._conn.url

    @property
    def compute_targets(self) -> Dict[str, "ComputeTarget"]:
        """The attached computes by name (each a ``KubernetesCompute``), as the workspace lists them now."""
        from .compute import _compute_from

        items = self._conn.call("GET", self._path() + "/computes") or []
        return {c["name"]: _compute_from(self, c) for c in items}

    def get_details(self) -> Dict[str, Any]:
        """The workspace's settings as the workspace shows them (name, resource_group, default_compute)."""
        self._details = self._conn.call("GET", self._path())
        return dict(self._details or {})

    def write_config(self, path: Optional[str] = None, file_name: Optional[str] = None) -> str:
        """Writes config.json (into path/.azureml, path the current folder by default) for from_config()."""
        import json
        import os

        folder = os.path.join(path or os.getcwd(), ".azureml")
        os.makedirs(folder, exist_ok=True)
        target = os.path.join(folder, file_name or "config.json")
        cfg = {"resource_group": self._resource_group, "workspace_name": self._workspace_name}
        if self._subscription_id:
            cfg["subscription_id"] = self._subscription_id
        with open(target, "w", encoding="utf-8") as f:
            json.dump(cfg, f, indent=4)
            f.write("\n")
        return target

    def __repr__(self) -> str:
        return (f"Workspace.create(name='{self._workspace_name}', subscription_id='{self._subscription_id or ''}', "
                f"resource_group='{self._resource_group}')")
