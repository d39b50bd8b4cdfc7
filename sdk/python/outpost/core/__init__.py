"""The workspace and compute targets, as ``azureml.core`` spells them.

``from outpost.core.workspace import Workspace`` and
``from outpost.core.compute import KubernetesCompute, ComputeTarget`` take
the place of the ``azureml.core`` imports of a script.
"""

from .compute import ComputeTarget, KubernetesCompute
from .workspace import Workspace

__all__ = ["Workspace", "ComputeTarget", "KubernetesCompute"]
