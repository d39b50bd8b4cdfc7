"""Jobs, endpoints and deployments, as ``azure.ai.ml.entities`` spells them.

Each entity is the document the workspace (or a YAML file) holds, with its
fields as attributes in the files' own snake_case names: ``job.display_name``,
``job.inputs``, ``endpoint.scoring_uri``. A field the document lacks reads
as ``None``. Setting a field of a loaded job changes what is submitted.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, Optional

__all__ = ["Job", "Command", "CommandJob", "OnlineEndpoint", "KubernetesOnlineEndpoint", "OnlineDeployment",
           "KubernetesOnlineDeployment", "EndpointAuthKeys", "EndpointAuthToken"]


class _Entity:
    """A document with its fields as attributes."""

    # Fields a document of this kind may have: they read as None when absent.
    _fields: frozenset = frozenset()
    # Fields the workspace sets: they cannot be assigned.
    _read_only: frozenset = frozenset()

    def __init__(self, doc: Optional[Dict[str, Any]] = None, **fields: Any) -> None:
        object.__setattr__(self, "_doc", dict(doc or {}))
        for k, v in fields.items():
            setattr(self, k, v)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        doc = object.__getattribute__(self, "_doc")
        if name in doc:
            return doc[name]
        if name in self._fields:
            return None
        raise AttributeError(f"{type(self).__name__} has no field {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") or isinstance(getattr(type(self), name, None), property):
            object.__setattr__(self, name, value)
            return
        if name in self._read_only:
            raise AttributeError(f"{name} is set by the workspace")
        if value is None:
            self._doc.pop(name, None)
        else:
            self._doc[name] = value

    def _to_dict(self) -> Dict[str, Any]:
        """The document, as the workspace (or the file) has it."""
        return copy.deepcopy(self._doc)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={self._doc[k]!r}" for k in ("name", "status", "provisioning_state") if k in self._doc)
        return f"{type(self).__name__}({fields})"


_JOB_FIELDS = frozenset({
    "$schema", "type", "name", "display_name", "experiment_name", "description", "tags", "properties", "code",
    "command", "environment", "environment_variables", "compute", "resources", "distribution", "limits", "inputs",
    "outputs", "identity", "id", "resource_group", "workspace", "status", "status_message", "creation_context",
    "start_time", "end_time", "services"})


class Job(_Entity):
    """A command job: a loaded file (``load_job``) or a job of the workspace (``jobs.get``).

    ``status`` is ``NotStarted``, ``Queued``, ``Preparing``, ``Running``,
    ``Finalizing``, ``Completed``, ``Failed``, ``CancelRequested`` or
    ``Canceled``; ``status_message`` says why a job waits or failed.
    """

    _fields = _JOB_FIELDS
    _read_only = frozenset({"id", "resource_group", "workspace", "status", "status_message", "creation_context",
                            "start_time", "end_time", "services"})

    def __init__(self, doc: Optional[Dict[str, Any]] = None, **fields: Any) -> None:
        super().__init__(doc, **fields)
        # Where a loaded file's local paths are taken from, and its lines.
        object.__setattr__(self, "_base_path", None)
        object.__setattr__(self, "_source", None)

    @property
    def compute(self) -> Optional[str]:
        """The compute's name (``azureml:`` left off, as azure.ai.ml shows it)."""
        c = self._doc.get("compute")
        if isinstance(c, str) and c.startswith("azureml:"):
            return c[len("azureml:"):]
        return c

    @compute.setter
    def compute(self, value: Optional[str]) -> None:
        if value is None:
            self._doc.pop("compute", None)
        else:
            self._doc["compute"] = value

    @property
    def studio_url(self) -> Optional[str]:
        """The job's address on the workspace."""
        services = self._doc.get("services") or {}
        studio = services.get("Studio") or {}
        return studio.get("endpoint")


Command = Job
CommandJob = Job


_ENDPOINT_FIELDS = frozenset({
    "$schema", "id", "name", "description", "tags", "auth_mode", "compute", "identity", "traffic", "mirror_traffic",
    "kind", "scoring_uri", "swagger_uri", "provisioning_state", "status_message", "creation_context",
    "resource_group", "workspace"})


class OnlineEndpoint(_Entity):
    """An online endpoint: ``scoring_uri``, ``auth_mode`` (key or aml_token), ``traffic``, ``provisioning_state``."""

    _fields = _ENDPOINT_FIELDS
    _read_only = frozenset({"id", "scoring_uri", "swagger_uri", "provisioning_state", "status_message",
                            "creation_context", "resource_group", "workspace", "kind"})


KubernetesOnlineEndpoint = OnlineEndpoint

_DEPLOYMENT_FIELDS = frozenset({
    "$schema", "id", "name", "endpoint_name", "type", "description", "tags", "model", "code_configuration",
    "environment", "environment_variables", "instance_type", "instance_count", "app_insights_enabled",
    "scale_settings", "request_settings", "liveness_probe", "readiness_probe", "resources", "provisioning_state",
    "status_message", "ready_instance_count", "creation_context"})


class OnlineDeployment(_Entity):
    """A deployment of an online endpoint, with its ``provisioning_state`` and instances."""

    _fields = _DEPLOYMENT_FIELDS
    _read_only = frozenset({"id", "provisioning_state", "status_message", "ready_instance_count", "creation_context"})


KubernetesOnlineDeployment = OnlineDeployment


class EndpointAuthKeys:
    """An endpoint's keys (key auth). They are secrets: do not print them."""

    def __init__(self, primary_key: str, secondary_key: str) -> None:
        self.primary_key = primary_key
        self.secondary_key = secondary_key

    def __repr__(self) -> str:
        return "EndpointAuthKeys(primary_key=<hidden>, secondary_key=<hidden>)"


class EndpointAuthToken:
    """An aml_token for an endpoint (aml_token auth), valid until ``expiry_time_utc``. A secret."""

    def __init__(self, access_token: str, token_type: str, expiry_time_utc: str, refresh_after_time_utc: str) -> None:
        self.access_token = access_token
        self.token_type = token_type
        self.expiry_time_utc = expiry_time_utc
        self.refresh_after_time_utc = refresh_after_time_utc

    def __repr__(self) -> str:
        return f"EndpointAuthToken(access_token=<hidden>, expiry_time_utc={self.expiry_time_utc!r})"
