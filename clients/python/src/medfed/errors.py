"""What a hub's refusal or failure looks like in Python.

The hub answers every error with ``{"error": "<a sentence>", "kind": "<machine name>"}`` and an
HTTP status; each kind is an exception class here, so a notebook can catch exactly the case it
expects (a disclosive query is :class:`Refused`, not a crash).
"""

from __future__ import annotations

from typing import Any


class MedfedError(Exception):
    """Any error the hub returned (or the hub could not be reached: ``status`` 0)."""

    def __init__(self, message: str, *, status: int = 0, kind: str = "", details: Any = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.kind = kind
        self.details = details

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status}, {self.kind})" if self.status else self.message


class Unauthenticated(MedfedError):
    """No token, or one the hub does not accept (401)."""


class Forbidden(MedfedError):
    """The caller's roles or the study do not allow this (403)."""


class NotFound(MedfedError):
    """No such study or model (404)."""


class InvalidRequest(MedfedError):
    """The request or the SQL is not valid (400)."""


class Refused(MedfedError):
    """Disclosure control refused the result: not aggregate-only, or cells too small (422)."""


class Unavailable(MedfedError):
    """No site answered, the sites changed mid-analysis, or the audit trail is down (503)."""


class AwaitingReview(MedfedError):
    """The result is held for review (202): a check marked "review" fired, and a custodian of
    every contributing site must approve it. ``review`` is the review (``id``, ``checks``,
    ``sites``); follow it with :meth:`medfed.Client.review`."""

    def __init__(self, review: dict[str, Any]):
        checks = ", ".join(review.get("checks", {})) or "a check"
        super().__init__(
            f"awaiting review {review.get('id')}: {checks} fired, so a custodian of every "
            "contributing site must approve the result first",
            status=202,
            kind="awaiting_review",
            details=review,
        )
        self.review = review
        self.id = str(review.get("id", ""))


_BY_STATUS: dict[int, type[MedfedError]] = {
    400: InvalidRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    422: Refused,
    503: Unavailable,
}


def from_response(status: int, body: Any) -> MedfedError:
    """The exception for an error response (``body`` is its parsed JSON, or its text)."""
    if isinstance(body, dict):
        message = str(body.get("error", "the hub gave no reason"))
        kind = str(body.get("kind", ""))
        details = body.get("sites")
    else:
        message, kind, details = str(body) or f"HTTP {status}", "", None
    cls = _BY_STATUS.get(status, MedfedError)
    return cls(message, status=status, kind=kind, details=details)
