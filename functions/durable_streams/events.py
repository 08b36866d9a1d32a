"""Firestore document events (CloudEvents) decoded into plain values, no I/O.

The data of a `google.cloud.firestore.document.v1.written` event is a
protobuf `DocumentEventData` with the document before and after the write.
Cloud Functions and the firebase-tools Functions emulator deliver it as raw
protobuf bytes. The Firestore emulator's own trigger delivery sends the same
bytes base64-encoded, under the same content type. Both forms are accepted,
and so is the JSON form of the message (`application/json`).

Field values decode to the Python types the Firestore client returns: str,
int, float, bool, None, bytes, datetimes in UTC, lists and dicts.
References stay full resource names, and geo points become
`(latitude, longitude)` tuples.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cloudevents.abstract import CloudEvent
from google.events.cloud.firestore import Document, DocumentEventData, Value
from google.protobuf.message import DecodeError

from .errors import DurableStreamError

WRITTEN: str = "google.cloud.firestore.document.v1.written"
"""CloudEvent type of a Firestore write: a create, an update or a delete."""

_BASE64 = re.compile(rb"[A-Za-z0-9+/]+={0,2}")
_DOCUMENTS = "/documents/"


class EventError(DurableStreamError):
    """A CloudEvent is not a Firestore document event that can be decoded."""


@dataclass(frozen=True)
class StoredDocument:
    """One version of a document, as a write event shows it."""

    path: str
    """Path relative to the database root, such as ``"genkit-streams/abc"``."""

    fields: dict[str, Any]
    update_time: datetime.datetime | None


@dataclass(frozen=True)
class DocumentChange:
    """A document before and after one write; `after` is None for a delete."""

    before: StoredDocument | None
    after: StoredDocument | None

    @property
    def path(self) -> str | None:
        document = self.after or self.before
        return document.path if document is not None else None


def decode_written_event(event: CloudEvent) -> DocumentChange:
    """Decode a Firestore write event; raise `EventError` if it is not one."""
    event_type = event.get("type")
    if event_type != WRITTEN:
        raise EventError(f"expected a {WRITTEN!r} event, got: {event_type!r}")

    data = decode_event_data(event.get_data(), event.get("datacontenttype"))
    return DocumentChange(
        before=_stored_document(data.old_value),
        after=_stored_document(data.value),
    )


def decode_event_data(data: Any, content_type: str | None = None) -> DocumentEventData:
    """Decode the data of a document event: raw or base64 protobuf, or JSON."""
    if data is None:
        return DocumentEventData()
    if isinstance(data, Mapping):
        return _from_json(json.dumps(data))
    if isinstance(data, str):
        data = data.encode("ascii", errors="replace")
    if not isinstance(data, bytes | bytearray):
        raise EventError(f"event data must be bytes or JSON, got: {type(data)!r}")

    payload = bytes(data)
    if content_type and "json" in content_type:
        return _from_json(payload.decode("utf-8", errors="replace"))
    return _from_protobuf(_unwrap_base64(payload))


def decode_value(value: Value) -> Any:
    """Return the Python value of one Firestore field value."""
    kind = Value.pb(value).WhichOneof("value_type")
    if kind is None or kind == "null_value":
        return None
    if kind == "timestamp_value":
        timestamp: datetime.datetime = value.timestamp_value
        return timestamp
    if kind == "array_value":
        return [decode_value(item) for item in value.array_value.values]
    if kind == "map_value":
        return decode_fields(value.map_value.fields)
    if kind == "geo_point_value":
        point = value.geo_point_value
        return (point.latitude, point.longitude)
    return getattr(value, kind)


def decode_fields(fields: Mapping[str, Value]) -> dict[str, Any]:
    return {name: decode_value(value) for name, value in fields.items()}


def relative_path(name: str) -> str:
    """Return a document's path below the database root, given its full name.

    ``projects/P/databases/D/documents/C/S`` becomes ``C/S``.
    """
    _, found, path = name.partition(_DOCUMENTS)
    if not found or not path:
        raise EventError(f"not a Firestore document name: {name!r}")
    return path


def _unwrap_base64(payload: bytes) -> bytes:
    """Return the protobuf bytes inside a base64 body, or the body unchanged.

    A serialized `DocumentEventData` starts with a field tag byte (0x0A, 0x12
    or 0x1A), which is never a base64 character, so the two forms cannot be
    mistaken for each other.
    """
    text = payload.strip()
    if not text or not _BASE64.fullmatch(text):
        return payload
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        return payload


def _from_protobuf(payload: bytes) -> DocumentEventData:
    try:
        data: DocumentEventData = DocumentEventData.deserialize(payload)
    except DecodeError as error:
        raise EventError(f"event data is not a DocumentEventData: {error}") from None
    return data


def _from_json(text: str) -> DocumentEventData:
    try:
        data: DocumentEventData = DocumentEventData.from_json(
            text, ignore_unknown_fields=True
        )
    except (ValueError, TypeError) as error:
        raise EventError(f"event data is not a DocumentEventData: {error}") from None
    return data


def _stored_document(document: Document) -> StoredDocument | None:
    if not document.name:
        return None

    update_time: datetime.datetime | None = None
    if Document.pb(document).HasField("update_time"):
        update_time = document.update_time

    return StoredDocument(
        path=relative_path(document.name),
        fields=decode_fields(document.fields),
        update_time=update_time,
    )
