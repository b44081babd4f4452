"""AWS-shaped errors: every failure a client can cause is one of these.

The wire layer turns an ApiError into `{"__type": code, "message": message}` with its HTTP status;
anything else that escapes a handler is a real server fault (500, ServerException).
"""

from __future__ import annotations


class ApiError(Exception):
    """An error answered to the client as `{"__type": code, "message": message}`."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def client_error(message: str) -> ApiError:
    return ApiError("ClientException", message)


def invalid_parameter(message: str) -> ApiError:
    return ApiError("InvalidParameterException", message)


def cluster_not_found() -> ApiError:
    return ApiError("ClusterNotFoundException", "Cluster not found.")


def service_not_found() -> ApiError:
    return ApiError("ServiceNotFoundException", "Service not found.")


def resource_not_found(message: str = "The specified resource could not be found.") -> ApiError:
    return ApiError("ResourceNotFoundException", message)
