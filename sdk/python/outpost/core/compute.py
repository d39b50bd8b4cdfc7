"""Compute targets, as ``azureml.core.compute`` spells them.

Attaching a connected cluster as a compute target::

    config = KubernetesCompute.attach_configuration(resource_id=cluster_id, namespace="default",
                                                    identity_type="SystemAssigned")
    compute = ComputeTarget.attach(ws, "k8s-compute", config)
    compute.wait_for_completion(show_output=True)
    print(compute.get_status().serialize())

The workspace checks the cluster, its ML extension and the namespace; the
compute is ``Creating`` until it decides, then ``Succeeded`` or ``Failed``
with the reasons in ``provisioning_errors``.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Type

from ..exceptions import ComputeTargetException, HttpResponseError, ResourceNotFoundError, UserErrorException

if TYPE_CHECKING:
    from .workspace import Workspace

__all__ = ["ComputeTarget", "ComputeTargetAttachConfiguration", "KubernetesCompute",
           "KubernetesAttachConfiguration", "KubernetesComputeStatus"]

_TERMINAL = ("Succeeded", "Failed")


def _field(key: str, doc: str) -> property:
    """A read-only attribute for a field of the compute as the workspace shows it."""
    return property(lambda self: self._data.get(key, ""), doc=doc)


def _errors(self: Any) -> List[str]:
    return list(self._data.get("provisioningErrors") or [])


def _refused(err: HttpResponseError) -> ComputeTargetException:
    return ComputeTargetException(err.message, code=err.code, status_code=err.status_code)


class ComputeTargetAttachConfiguration:
    """What attaching a compute target needs; made by a compute type's ``attach_configuration``."""

    _compute_type: Optional[Type["ComputeTarget"]] = None

    def validate_configuration(self) -> None:
        """Raises ComputeTargetException when the configuration cannot be attached."""


class ComputeTarget:
    """A compute target of a workspace.

    ``ComputeTarget(workspace=ws, name="x")`` fetches an attached compute and
    returns it as its own type (``KubernetesCompute``); it raises
    ``ComputeTargetException`` when the workspace has none of that name.
    """

    _compute_type_name = ""

    def __new__(cls, workspace: Optional["Workspace"] = None, name: Optional[str] = None) -> "ComputeTarget":
        if workspace is None or name is None:
            raise UserErrorException(f"{cls.__name__}(workspace=..., name=...) fetches an attached compute: "
                                     "give both (attach a new one with ComputeTarget.attach)")
        data = _get(workspace, name)
        target = _type_of(data)
        if not issubclass(target, cls):
            raise ComputeTargetException(f"compute {name} is of type {data.get('type')}, not {cls._compute_type_name}")
        obj = object.__new__(target)
        obj._bind(workspace, data)
        return obj

    def __init__(self, workspace: Optional["Workspace"] = None, name: Optional[str] = None) -> None:
        # __new__ did the work: it fetched the compute.
        pass

    def _bind(self, workspace: "Workspace", data: Dict[str, Any]) -> None:
        self._workspace = workspace
        self._data = data

    @staticmethod
    def attach(workspace: "Workspace", name: str, attach_configuration: ComputeTargetAttachConfiguration) -> "ComputeTarget":
        """Attaches a compute target; it is ``Creating`` until the workspace decides (see wait_for_completion)."""
        if not isinstance(attach_configuration, ComputeTargetAttachConfiguration) or attach_configuration._compute_type is None:
            raise ComputeTargetException("attach_configuration: make one with KubernetesCompute.attach_configuration(...)")
        attach_configuration.validate_configuration()
        return attach_configuration._compute_type._attach(workspace, name, attach_configuration)

    @classmethod
    def _attach(cls, workspace: "Workspace", name: str, config: ComputeTargetAttachConfiguration) -> "ComputeTarget":
        raise NotImplementedError

    @staticmethod
    def list(workspace: "Workspace") -> List["ComputeTarget"]:
        """The workspace's compute targets."""
        return list(workspace.compute_targets.values())

    # What the workspace says of the compute, as last fetched.

    @property
    def workspace(self) -> "Workspace":
        return self._workspace

    name = _field("name", "The compute's name.")
    type = _field("type", "The compute's type as the workspace names it (``Kubernetes``).")
    id = _field("id", "The compute's resource id in the workspace.")
    provisioning_state = _field("provisioningState", "``Creating``, ``Succeeded`` or ``Failed``.")
    provisioning_errors = property(_errors, doc="Why a ``Failed`` compute failed, as the workspace says it.")

    def refresh(self) -> None:
        """Fetches the compute's state again."""
        self._data = _get(self._workspace, self.name)

    def wait_for_completion(self, show_output: bool = False, is_delete_operation: bool = False,
                            timeout_sec: Optional[float] = None) -> None:
        """Waits until the compute is ``Succeeded`` or ``Failed``.

        With show_output the state is printed as it changes (a dot for each
        check). A ``Failed`` compute raises ComputeTargetException with the
        workspace's reasons. ``timeout_sec`` bounds the wait (none by default).
        """
        if is_delete_operation:
            raise ComputeTargetException("detach completes when detach() returns: there is nothing to wait for")
        deadline = None if timeout_sec is None else time.monotonic() + timeout_sec
        state = self.provisioning_state
        out = sys.stdout
        if show_output:
            out.write(state)
            out.flush()
        delay = 0.3
        started = time.monotonic()
        while state not in _TERMINAL:
            if deadline is not None and time.monotonic() >= deadline:
                if show_output:
                    out.write("\n")
                raise ComputeTargetException(
                    f"compute {self.name} is still {state} after {timeout_sec:g} s; its state: get_status()")
            # The workspace has no long poll for computes: it is asked
            # again, quickly while an attach usually settles, then less often.
            time.sleep(delay)
            if time.monotonic() - started > 5:
                delay = 1.0
            self.refresh()
            new = self.provisioning_state
            if show_output:
                out.write("." if new == state else "\n" + new)
                out.flush()
            state = new
        if show_output:
            out.write(f'\nProvisioning operation finished, operation "{state}"\n')
            out.flush()
        if state != "Succeeded":
            errors = self.provisioning_errors
            raise ComputeTargetException(
                f"Compute object provisioning polling reached non-successful terminal state, current provisioning "
                f"state: {state}\nProvisioning operation error:\n" + ("\n".join(errors) or "(none given)"),
                provisioning_errors=errors)

    def get_status(self) -> "KubernetesComputeStatus":
        """The compute's current state (fetched now)."""
        self.refresh()
        return KubernetesComputeStatus(self._data)

    def serialize(self) -> Dict[str, Any]:
        """The compute as a dict, as last fetched (see KubernetesComputeStatus.serialize)."""
        return KubernetesComputeStatus(self._data).serialize()

    def detach(self) -> None:
        """Detaches the compute from the workspace; the cluster keeps running."""
        try:
            self._workspace._conn.call("DELETE", self._workspace._compute_path(self.name))
        except HttpResponseError as e:
            raise _refused(e) from None

    def delete(self) -> None:
        """Not for attached computes: the workspace did not create the cluster. Use detach()."""
        raise ComputeTargetException(f"delete is not supported for {type(self).__name__}: the cluster is only "
                                     "attached; use detach()")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workspace={self._workspace!r}, name={self.name}, id={self.id}, " \
               f"type={self.type}, provisioning_state={self.provisioning_state})"


class KubernetesAttachConfiguration(ComputeTargetAttachConfiguration):
    """How to attach a connected cluster: made by KubernetesCompute.attach_configuration."""

    def __init__(self, resource_id: Optional[str] = None, namespace: Optional[str] = None,
                 identity_type: Optional[str] = None, identity_ids: Optional[List[str]] = None,
                 create_namespace: bool = False) -> None:
        self._compute_type = KubernetesCompute
        self.resource_id = resource_id
        self.namespace = namespace
        self.identity_type = identity_type
        self.identity_ids = identity_ids
        self.create_namespace = create_namespace

    def validate_configuration(self) -> None:
        if not self.resource_id:
            raise ComputeTargetException("resource_id is required: the connected cluster, "
                                         "/resourceGroups/RG/connectedClusters/NAME or the Azure form")
        if self.identity_ids is not None and (isinstance(self.identity_ids, str)
                                              or not all(isinstance(i, str) for i in self.identity_ids)):
            raise ComputeTargetException("identity_ids: a list of identity resource ids")

    def _request(self) -> Dict[str, Any]:
        """The body of the attach, as `outpost ml compute attach --type Kubernetes` sends it."""
        return {
            "type": "Kubernetes",
            "resourceId": self.resource_id,
            "namespace": self.namespace or "default",
            "identityType": self.identity_type or "",
            "userAssignedIdentities": list(self.identity_ids) if self.identity_ids is not None else None,
            "createNamespace": bool(self.create_namespace),
        }


class KubernetesCompute(ComputeTarget):
    """A connected Kubernetes cluster attached to a workspace."""

    _compute_type_name = "Kubernetes"

    @staticmethod
    def attach_configuration(resource_id: Optional[str] = None, namespace: Optional[str] = None,
                             default_instance_type: Optional[str] = None, instance_types: Any = None,
                             identity_type: Optional[str] = None, identity_ids: Optional[List[str]] = None,
                             create_namespace: bool = False) -> KubernetesAttachConfiguration:
        """The configuration to attach a connected cluster.

        resource_id: the connected cluster, ``/resourceGroups/RG/connectedClusters/NAME``
            or Azure's ``/subscriptions/.../providers/Microsoft.Kubernetes/connectedClusters/NAME``.
        namespace: where the compute's workloads run (``default``).
        identity_type: ``SystemAssigned`` (the default), ``UserAssigned`` or ``None``.
        identity_ids: the user-assigned identity ids (only the first is used).
        create_namespace: create the namespace when the cluster lacks it.

        Instance types come from the cluster's InstanceType objects, so
        default_instance_type and instance_types are refused.
        """
        if default_instance_type is not None or instance_types is not None:
            raise ComputeTargetException(
                "default_instance_type and instance_types are not set on attach: a cluster's instance types are its "
                "InstanceType objects (kubectl apply), and defaultinstancetype is the default")
        return KubernetesAttachConfiguration(resource_id, namespace, identity_type, identity_ids, create_namespace)

    @classmethod
    def _attach(cls, workspace: "Workspace", name: str, config: ComputeTargetAttachConfiguration) -> "KubernetesCompute":
        if not isinstance(config, KubernetesAttachConfiguration):
            raise ComputeTargetException("attach_configuration: make one with KubernetesCompute.attach_configuration(...)")
        try:
            data = workspace._conn.call("PUT", workspace._compute_path(name), config._request())
        except HttpResponseError as e:
            raise _refused(e) from None
        for w in data.get("warnings") or []:
            print(f"warning: {w}", file=sys.stderr)
        obj = object.__new__(cls)
        obj._bind(workspace, data)
        return obj

    resource_id = _field("resourceId", "The attached cluster's resource id, as given to attach.")
    namespace = _field("namespace", "The namespace the compute's workloads run in.")

    @property
    def identity_type(self) -> str:
        return (self._data.get("identity") or {}).get("type", "")

    @property
    def identity_ids(self) -> List[str]:
        return list((self._data.get("identity") or {}).get("userAssignedIdentities") or [])

    @property
    def principal_id(self) -> Optional[str]:
        """The principal id of a system-assigned identity."""
        return (self._data.get("identity") or {}).get("principalId") or None

    @property
    def instance_types(self) -> List[str]:
        """The names of the cluster's instance types, as it last reported them."""
        return [t.get("name", "") for t in self._data.get("instanceTypes") or []]


class KubernetesComputeStatus:
    """A Kubernetes compute's state, as ``get_status()`` returns it."""

    def __init__(self, data: Dict[str, Any]) -> None:
        self._data = data

    provisioning_state = _field("provisioningState", "``Creating``, ``Succeeded`` or ``Failed``.")
    provisioning_errors = property(_errors, doc="Why a ``Failed`` compute failed, as the workspace says it.")

    def serialize(self) -> Dict[str, Any]:
        """The status as a dict in Azure's shape: provisioning state and errors, identity, cluster, namespace."""
        d = self._data
        ident = d.get("identity") or {}
        identity: Dict[str, Any] = {"type": ident.get("type", "")}
        if ident.get("principalId"):
            identity["principalId"] = ident["principalId"]
        if ident.get("userAssignedIdentities"):
            # Azure keys user-assigned identities by their resource id, each
            # with its own principal and client ids.
            details = {x.get("resourceId"): x for x in ident.get("userAssignedIdentityDetails") or []}
            identity["userAssignedIdentities"] = {
                i: {k: v for k, v in (("principalId", details.get(i, {}).get("principalId")),
                                      ("clientId", details.get(i, {}).get("clientId"))) if v}
                for i in ident["userAssignedIdentities"]}
        out: Dict[str, Any] = {
            "id": d.get("id", ""),
            "name": d.get("name", ""),
            "computeType": d.get("type", ""),
            "provisioningState": d.get("provisioningState", ""),
            "provisioningErrors": [{"error": {"message": m}} for m in d.get("provisioningErrors") or []] or None,
            "resourceId": d.get("resourceId", ""),
            "resourceGroup": d.get("resourceGroup", ""),
            "workspace": d.get("workspace", ""),
            "isAttachedCompute": True,
            "properties": {"namespace": d.get("namespace", ""),
                           "instanceTypes": {t.get("name", ""): {"resources": t.get("resources", {})}
                                             for t in d.get("instanceTypes") or []}},
            "identity": identity,
        }
        return out

    def __repr__(self) -> str:
        return f"KubernetesComputeStatus({self.serialize()!r})"


def _get(workspace: "Workspace", name: str) -> Dict[str, Any]:
    try:
        return workspace._conn.call("GET", workspace._compute_path(name))
    except ResourceNotFoundError as e:
        raise ComputeTargetException(f"ComputeTargetNotFound: {e.message}", code=e.code, status_code=e.status_code) from None
    except HttpResponseError as e:
        raise _refused(e) from None


def _type_of(data: Dict[str, Any]) -> Type[ComputeTarget]:
    if str(data.get("type", "")).lower() == "kubernetes":
        return KubernetesCompute
    return ComputeTarget


def _compute_from(workspace: "Workspace", data: Dict[str, Any]) -> ComputeTarget:
    obj = object.__new__(_type_of(data))
    obj._bind(workspace, data)
    return obj
