"""Outpost's Python SDK: the workspace of a self-hosted Azure ML Kubernetes extension.

``outpost.core`` mirrors ``azureml.core`` (workspaces, attaching Kubernetes
compute); ``outpost.ml`` mirrors ``azure.ai.ml`` (``MLClient``, jobs, online
endpoints). Errors are ``outpost.exceptions``.
"""

__version__ = "0.1.0"
