"""Durable, resumable Server-Sent Event streams for Cloud Functions, stored in
Firestore and compatible with Genkit's durable streaming clients."""

from .config import StreamOptions
from .context import FlowContext
from .errors import (
    Cancelled,
    DurableStreamError,
    FlowError,
    InvalidArgument,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from .flow import DurableFlow, durable_flow
from .wire import STREAM_ID_HEADER

__all__ = [
    "STREAM_ID_HEADER",
    "Cancelled",
    "DurableFlow",
    "DurableStreamError",
    "FlowContext",
    "FlowError",
    "InvalidArgument",
    "ResourceExhausted",
    "StreamOptions",
    "Unauthenticated",
    "Unavailable",
    "durable_flow",
]
