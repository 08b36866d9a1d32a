"""Who sends a request, and which streams that caller may follow or cancel.

Callers prove who they are with a Firebase Auth ID token in
``Authorization: Bearer <token>``, verified by firebase-admin. With the
`auth` option at ``"off"`` the header is ignored and every caller is
anonymous.

A stream records the uid of the caller that started it as its owner. A
stream with an owner is open to that caller only; a stream without one is
open to anyone who has its id. A request for a stream that the caller may
not access gets the same response as a request for an unknown stream, so the
response reveals nothing about other users' streams.

With `FIREBASE_AUTH_EMULATOR_HOST` set, firebase-admin (7.7) accepts the
unsigned tokens of the Auth emulator and checks neither signatures nor expiry
times; it checks both in production.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import flask

from .config import StreamOptions
from .errors import Unauthenticated, Unavailable

logger = logging.getLogger(__name__)

BEARER = "bearer"

_app_lock = threading.Lock()


@dataclass(frozen=True)
class Caller:
    """The sender of a request: a Firebase Auth user, or anonymous."""

    uid: str | None = None

    @property
    def anonymous(self) -> bool:
        return self.uid is None


ANONYMOUS = Caller()


def authenticate(request: flask.Request, options: StreamOptions) -> Caller:
    """Return the caller of a request from its Authorization header.

    Raises `Unauthenticated` for a missing token when `options.auth` is
    ``"required"``, and for a token that is malformed, expired, revoked or
    issued for another project whenever auth is on. Raises `Unavailable`
    when Google's token signing keys cannot be fetched.
    """
    if options.auth == "off":
        return ANONYMOUS

    header = request.headers.get("Authorization")
    if header is None or not header.strip():
        if options.auth == "required":
            raise Unauthenticated(
                "This endpoint needs a Firebase Auth ID token: send "
                "'Authorization: Bearer <token>'."
            )
        return ANONYMOUS

    return Caller(verify_token(_bearer_token(header)))


def may_access(caller: Caller, owner: str | None) -> bool:
    """Tell whether a caller may follow or cancel a stream with this owner."""
    return owner is None or owner == caller.uid


def verify_token(token: str) -> str:
    """Verify a Firebase Auth ID token and return its user's uid."""
    from firebase_admin import auth

    try:
        claims: dict[str, Any] = auth.verify_id_token(token, app=_firebase_app())
    except auth.CertificateFetchError as error:
        logger.error("Fetching the token signing keys failed: %s", error)
        raise Unavailable(
            "The ID token could not be verified now; try again."
        ) from None
    except (auth.InvalidIdTokenError, auth.UserDisabledError, ValueError) as error:
        # The error's message may quote the token, which must not be logged.
        logger.info("Rejected an ID token: %s", type(error).__name__)
        raise Unauthenticated(
            "The ID token is invalid or expired; sign in again and send a fresh token."
        ) from None

    return str(claims["uid"])


def _bearer_token(header: str) -> str:
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != BEARER or not token.strip():
        raise Unauthenticated(
            "The Authorization header must read 'Bearer <Firebase ID token>'."
        )
    return token.strip()


def _firebase_app() -> Any:
    """Return firebase-admin's default app, initializing it on first use."""
    import firebase_admin

    with _app_lock:
        try:
            return firebase_admin.get_app()
        except ValueError:
            pass
        try:
            return firebase_admin.initialize_app()
        except ValueError:
            # The Firestore client set-up initialized it meanwhile.
            return firebase_admin.get_app()
