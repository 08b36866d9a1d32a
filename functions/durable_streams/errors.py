"""The exception tree of the package.

Every exception raised on purpose by this package derives from
`DurableStreamError`. `FlowError` and its subclasses carry a Genkit status
name and a message that is safe to show to a client; a flow raises one of them
to end its stream with that status. Any other exception from a flow reaches
clients only as `INTERNAL` with a generic message.
"""

from __future__ import annotations


class DurableStreamError(Exception):
    """Base class of every error this package raises on purpose."""


class FlowError(DurableStreamError):
    """A failure whose status and message may be shown to the client.

    `status` is a Genkit status name such as ``"INVALID_ARGUMENT"``.
    """

    status = "UNKNOWN"

    def __init__(self, message: str, *, status: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class InvalidArgument(FlowError):
    """The request or the flow input is invalid."""

    status = "INVALID_ARGUMENT"


class ResourceExhausted(FlowError):
    """A size or concurrency limit was reached."""

    status = "RESOURCE_EXHAUSTED"


class Unauthenticated(FlowError):
    """The request carries no valid Firebase Auth ID token where one is needed."""

    status = "UNAUTHENTICATED"


class Cancelled(FlowError):
    """The stream was cancelled; raised inside a flow to stop it."""

    status = "CANCELLED"

    def __init__(self, message: str = "The stream was cancelled.") -> None:
        super().__init__(message)


class Unavailable(FlowError):
    """Firestore or the stream's producer could not be reached."""

    status = "UNAVAILABLE"


class StoreError(DurableStreamError):
    """A Firestore operation failed after every retry."""


class LeaseLost(DurableStreamError):
    """Another producer took over the stream, so this one must stop writing."""


class StreamGone(DurableStreamError):
    """The stream record was deleted while it was in use."""
