"""Federated answers as pandas DataFrames that carry what each site did and how the answer was
protected.

Every answer of the hub has the same three parts: a table (rows of a query, coefficients of a
model, bins of a survival curve), ``sites`` (each asked site's status, time and — in private
studies — its suppressions and budget), and ``privacy`` (the disclosure rules applied, the rows
withheld, ε and δ spent). :class:`FederatedFrame` is the table with the other two attached, so a
notebook shows the numbers and can always check where they came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class Privacy:
    """How a released answer was protected."""

    mode: str
    """``exact`` (disclosure rules only) or ``dp`` (noise as well)."""
    min_cell_count: int
    """The network's minimum cell count (sites may apply a larger one)."""
    epsilon: float
    """ε this release spent at each answering site."""
    delta: float
    """δ this release spent at each answering site."""
    secure_aggregation: bool
    """Whether the hub saw only the masked sum of the sites' partials."""
    suppressed: dict[int, str] = field(default_factory=dict)
    """Rows whose statistics were withheld (null in the table), with why."""
    mechanism: str | None = None
    """The noise mechanism, for DP results."""
    noise: dict[str, Any] = field(default_factory=dict)
    """Noise on each statistic: scale per site and the 95 % half-width of the merged noise."""
    withheld_groups: dict[str, int] = field(default_factory=dict)
    """Groups withheld without a row (secure aggregation, class disclosure, complementary
    suppression), by reason."""
    evidence: dict[str, Any] = field(default_factory=dict)
    """What the airlock checked: ``checks`` (each with setting, outcome, groups withheld) and each
    row's outcome (``rows``)."""

    @classmethod
    def from_json(cls, p: dict[str, Any] | None) -> Privacy:
        p = p or {}
        return cls(
            mode=str(p.get("mode", "")),
            min_cell_count=int(p.get("min_cell_count", 0)),
            epsilon=float(p.get("epsilon", 0.0)),
            delta=float(p.get("delta", 0.0)),
            secure_aggregation=bool(p.get("secure_aggregation", False)),
            suppressed={int(s["row"]): str(s["reason"]) for s in p.get("suppressed", [])},
            mechanism=p.get("mechanism"),
            noise=dict(p.get("noise", {})),
            withheld_groups={str(k): int(v) for k, v in p.get("withheld_groups", {}).items()},
            evidence=dict(p.get("evidence", {})),
        )


_SITE_COLUMNS = [
    "status",
    "elapsed_ms",
    "message",
    "suppressed",
    "epsilon_spent",
    "epsilon_remaining",
]


def sites_frame(outcomes: dict[str, Any] | None, privacy: dict[str, Any] | None) -> pd.DataFrame:
    """One row per asked site: how its part ended and what its privacy layer did."""
    per_site = (privacy or {}).get("sites", {})
    rows = []
    for name, o in sorted((outcomes or {}).items()):
        p = per_site.get(name, {})
        rows.append(
            {
                "site": name,
                "status": o.get("status"),
                "elapsed_ms": o.get("elapsed_ms"),
                "message": o.get("message"),
                "suppressed": p.get("suppressed", 0),
                "epsilon_spent": p.get("epsilon_spent", 0.0),
                "epsilon_remaining": p.get("epsilon_remaining"),
            }
        )
    return pd.DataFrame(rows, columns=["site", *_SITE_COLUMNS]).set_index("site")


class FederatedFrame(pd.DataFrame):
    """A :class:`pandas.DataFrame` with ``sites``, ``privacy`` and ``meta`` attached.

    ``sites`` is a DataFrame indexed by site name; ``privacy`` a :class:`Privacy`; ``meta`` the
    answer's other fields (a model's deviance, the study, …). The attributes survive slicing.
    """

    _metadata = ["sites", "privacy", "meta"]

    sites: pd.DataFrame
    privacy: Privacy
    meta: dict[str, Any]

    @property
    def _constructor(self) -> type[FederatedFrame]:
        return FederatedFrame

    @property
    def partial(self) -> bool:
        """True when some asked site is missing from the answer."""
        return bool((self.sites["status"] != "answered").any())

    @classmethod
    def build(cls, table: pd.DataFrame, answer: dict[str, Any], meta: dict[str, Any]) -> FederatedFrame:
        frame = cls(table)
        frame.sites = sites_frame(answer.get("sites"), answer.get("privacy"))
        frame.privacy = Privacy.from_json(answer.get("privacy"))
        frame.meta = meta
        return frame
