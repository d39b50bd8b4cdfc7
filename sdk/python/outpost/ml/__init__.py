"""Jobs and online endpoints, as ``azure.ai.ml`` spells them.

``from outpost.ml import MLClient, load_job`` takes the place of
``from azure.ai.ml import MLClient, load_job``::

    ml_client = MLClient(resource_group_name="rg", workspace_name="ws")   # or MLClient.from_config()
    job = ml_client.jobs.create_or_update(load_job("examples/jobs/hello-world/job.yml"))
    ml_client.jobs.stream(job.name)
    print(ml_client.jobs.get(job.name).status)
"""

from __future__ import annotations

from typing import Any, Optional

from .._client import Connection, find_workspace_config, load_login, workspace_from_config, workspace_path
from ..exceptions import UserErrorException
from ._endpoints import OnlineDeploymentOperations, OnlineEndpointOperations
from ._jobs import JobOperations, load_job
from .entities import Job

__all__ = ["MLClient", "load_job", "Job", "DefaultAzureCredential"]


class DefaultAzureCredential:
    """Stands for the login `outpost login` stored, where a script passes an Azure credential.

    ``from outpost.ml import DefaultAzureCredential`` lets
    ``MLClient(DefaultAzureCredential(), ...)`` run unchanged.
    """

    def __init__(self, **kwargs: Any) -> None:
        pass


class MLClient:
    """A workspace's jobs and online endpoints.

    The connection is the stored login (``outpost login``), or ``url``,
    ``token`` and ``ca_file`` when given. credential may be None or a
    DefaultAzureCredential (the stored login); subscription_id is kept for
    scripts written for Azure.
    """

    def __init__(self, credential: Any = None, subscription_id: Optional[str] = None,
                 resource_group_name: Optional[str] = None, workspace_name: Optional[str] = None, *,
                 url: Optional[str] = None, token: Optional[str] = None, ca_file: Optional[str] = None,
                 ca: Optional[str] = None, **kwargs: Any) -> None:
        if credential is not None and not isinstance(credential, DefaultAzureCredential):
            raise UserErrorException("credential: Outpost workspaces take the token `outpost login` stored "
                                     "(or url=, token=, ca_file=); pass None or outpost.ml.DefaultAzureCredential()")
        if not resource_group_name or not workspace_name:
            raise UserErrorException("MLClient needs resource_group_name and workspace_name "
                                     "(or use MLClient.from_config() with a config.json)")
        self.subscription_id = subscription_id
        self.resource_group_name = resource_group_name
        self.workspace_name = workspace_name
        self._conn = Connection(load_login(url, token, ca_file, ca))
        base = workspace_path(resource_group_name, workspace_name)
        self.jobs = JobOperations(self._conn, base)
        self.online_endpoints = OnlineEndpointOperations(self._conn, base)
        self.online_deployments = OnlineDeploymentOperations(self._conn, base)

    @classmethod
    def from_config(cls, credential: Any = None, *, path: Optional[str] = None, file_name: Optional[str] = None,
                    **kwargs: Any) -> "MLClient":
        """The workspace named by a config.json (found as azureml finds it), with the stored login."""
        cfg, where = find_workspace_config(path, file_name)
        sub, rg, ws = workspace_from_config(cfg, where)
        return cls(credential, sub, rg, ws, **kwargs)

    def __repr__(self) -> str:
        return (f"MLClient(resource_group_name={self.resource_group_name!r}, "
                f"workspace_name={self.workspace_name!r}, url={self._conn.url!r})")
