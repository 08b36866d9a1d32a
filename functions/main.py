"""Cloud Functions entry points.

`firebase deploy` and `firebase emulators:start` discover the functions
declared here with the firebase-functions SDK; functions-framework serves
them too (`functions-framework --source functions/main.py --target countdown`).
The options chosen, and why, are explained in the README's production section.
"""

import flask
from cloudevents.abstract import CloudEvent
from firebase_functions import https_fn, options, scheduler_fn

from countdown import countdown_flow
from durable_streams.logs import configure_logging
from durable_streams.sweep import sweep_dead_streams
from durable_streams.trigger import finalize_stream_event, on_stream_written

configure_logging()

STREAMS = countdown_flow.options


@https_fn.on_request(
    timeout_sec=3600,
    memory=options.MemoryOption.MB_512,
    cpu=1,
    concurrency=250,
)
def countdown(request: flask.Request) -> flask.Response:
    """Start, resume or call the countdown flow."""
    return countdown_flow.handle(request)


@on_stream_written(
    collection=STREAMS.collection,
    timeout_sec=120,
    memory=options.MemoryOption.MB_256,
)
def finalize_stream(event: CloudEvent) -> None:
    """Make an ended stream's documents expire together, one TTL after its end."""
    finalize_stream_event(event, STREAMS.collection)


@scheduler_fn.on_schedule(
    schedule="every 1 minutes",
    timeout_sec=120,
    memory=options.MemoryOption.MB_256,
)
def sweep_streams(event: scheduler_fn.ScheduledEvent) -> None:
    """End the streams whose producer died while no client followed them."""
    sweep_dead_streams(STREAMS.collection)
