"""Exceptions of the Outpost SDK.

Every error the workspace answers with is raised with the workspace's own
message (the one the CLI prints) and its error code, so that a script shows
the same reason a terminal would.

The names follow the SDKs the scripts come from: ``ComputeTargetException``
and ``UserErrorException`` as in ``azureml.exceptions``; ``HttpResponseError``,
``ResourceNotFoundError``, ``ClientAuthenticationError``,
``ServiceRequestError`` as in ``azure.core.exceptions``; ``ValidationException``
and ``JobException`` as in ``azure.ai.ml.exceptions``.
"""

from __future__ import annotations

from typing import Optional


class OutpostError(Exception):
    """Base of every exception the SDK raises.

    Attributes:
        message: what went wrong, as the workspace (or the SDK) says it.
        code: the workspace's error code (``InvalidConfiguration``,
            ``NotFound``, ...) when the workspace answered, else ``None``.
        status_code: the HTTP status of the workspace's answer, else ``None``.
    """

    def __init__(self, message: str, *, code: Optional[str] = None, status_code: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status_code = status_code

    def __str__(self) -> str:
        return self.message


class UserErrorException(OutpostError):
    """A mistake in what the caller gave: arguments, files, the login."""


class ValidationException(UserErrorException):
    """A document (a job file, a request) that cannot be used as it is."""


class YAMLError(ValidationException):
    """A YAML file the SDK cannot read; ``file`` and ``line`` say where."""

    def __init__(self, file: str, line: int, problem: str) -> None:
        super().__init__(f"{file}: line {line}: {problem}")
        self.file = file
        self.line = line
        self.problem = problem


class HttpResponseError(OutpostError):
    """The workspace refused a request: ``message`` is its own."""


class ClientAuthenticationError(HttpResponseError):
    """The workspace refused the token (401 or 403)."""


class ResourceNotFoundError(HttpResponseError):
    """The workspace has no such resource (404)."""


class ResourceExistsError(HttpResponseError):
    """The resource exists already, or is in a state that forbids the change (409)."""


class ServiceRequestError(OutpostError):
    """The workspace could not be reached, or the connection broke.

    ``maybe_applied`` is true when a request that changes something was sent
    before the connection failed: the workspace may have carried it out, so
    look at the resource before trying again.
    """

    def __init__(self, message: str, *, maybe_applied: bool = False) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied


class ComputeTargetException(OutpostError):
    """Attaching, fetching or detaching a compute target failed.

    When the workspace refused the call, ``code`` and ``status_code`` are its
    answer's; when an attach ended ``Failed``, ``provisioning_errors`` holds
    the workspace's reasons.
    """

    def __init__(self, message: str, *, code: Optional[str] = None, status_code: Optional[int] = None,
                 provisioning_errors: Optional[list] = None) -> None:
        super().__init__(message, code=code, status_code=status_code)
        self.provisioning_errors = list(provisioning_errors or [])


class JobException(OutpostError):
    """A job ended otherwise than ``Completed`` (``status`` says how)."""

    def __init__(self, message: str, *, status: Optional[str] = None) -> None:
        super().__init__(message)
        self.status = status
