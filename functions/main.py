"""Cloud Functions entry points.

`firebase deploy` and `firebase emulators:start` discover the functions
declared here with the firebase-functions SDK; functions-framework serves
them too (`functions-framework --source functions/main.py --target countdown`).
"""

import flask
from firebase_functions import https_fn, options

from countdown import countdown_flow
from durable_streams.logs import configure_logging

configure_logging()


@https_fn.on_request(
    timeout_sec=3600,
    memory=options.MemoryOption.MB_512,
    concurrency=80,
)
def countdown(request: flask.Request) -> flask.Response:
    """Start, resume or call the countdown flow."""
    return countdown_flow.handle(request)
