"""medfed: ask a network of hospitals questions from a notebook; the data stays where it is.

>>> import medfed                                                   # doctest: +SKIP
>>> hub = medfed.Client.from_demo("demo-net/demo.json")             # doctest: +SKIP
>>> hub.query("SELECT COUNT(*) AS n FROM person", study=study_id)   # doctest: +SKIP
"""

from .client import Client
from .errors import (
    AwaitingReview,
    Forbidden,
    InvalidRequest,
    MedfedError,
    NotFound,
    Refused,
    Unauthenticated,
    Unavailable,
)
from .frames import FederatedFrame, Privacy

__all__ = [
    "AwaitingReview",
    "Client",
    "FederatedFrame",
    "Forbidden",
    "InvalidRequest",
    "MedfedError",
    "NotFound",
    "Privacy",
    "Refused",
    "Unauthenticated",
    "Unavailable",
]
