"""The hub's HTTP API from Python: every call is one request, every answer a DataFrame or a
plain value, every refusal an exception from :mod:`medfed.errors`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from .errors import AwaitingReview, MedfedError, from_response
from .frames import FederatedFrame


class Client:
    """A researcher's (or custodian's, or auditor's) connection to a medfed hub.

    >>> hub = Client("http://127.0.0.1:8080", token="mf_...")          # doctest: +SKIP
    >>> hub.query("SELECT COUNT(*) AS n FROM person", study="s-1")     # doctest: +SKIP
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 300.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )

    @classmethod
    def from_demo(cls, path: str | Path = "demo-net/demo.json", role: str = "researcher") -> Client:
        """A client for the network ``medfed demo`` runs, as one of its people (``researcher``,
        ``auditor``, ``admin``, ``custodian:north``, …)."""
        demo = json.loads(Path(path).read_text())
        tokens = demo["tokens"]
        if role not in tokens:
            raise ValueError(f"demo.json has no token for {role!r}; it has {sorted(tokens)}")
        return cls(demo["hub_url"], tokens[role])

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- the network -----------------------------------------------------------------------

    def whoami(self) -> dict[str, Any]:
        """Who the hub takes this token for: ``id``, ``roles``, ``sites`` (custodians)."""
        return self._get("/v1/whoami")

    def sites(self) -> pd.DataFrame:
        """The network's sites and whether each answers now."""
        sites = self._get("/v1/sites")["sites"]
        return pd.DataFrame(sites, columns=["name", "status", "message"]).set_index("name")

    def catalog(self) -> pd.DataFrame:
        """What the sites offer, as metadata: one row per (table, column) with its type, whether
        it identifies a person, and which sites have the table."""
        tables = self._get("/v1/catalog")["tables"]
        rows = [
            {
                "table": name,
                "column": c["name"],
                "type": c["type"],
                "identifier": c["identifier"],
                "sites": ", ".join(t["sites"]),
            }
            for name, t in sorted(tables.items())
            for c in t["columns"]
        ]
        return pd.DataFrame(rows, columns=["table", "column", "type", "identifier", "sites"])

    def persons(self) -> pd.DataFrame:
        """How many people each table holds at each site, as each site publishes it: rounded
        (``about``) or only a floor (``fewer_than``) when too few to say. One row per (table,
        site); a site that publishes no counts has no row. The true counts never leave a site.
        ``frame.attrs["as_of"]`` says when the hub read them."""
        catalog = self._get("/v1/catalog")
        tables = catalog["tables"]
        rows = [
            {
                "table": name,
                "site": site,
                "about": count.get("about"),
                "fewer_than": count.get("fewer_than"),
            }
            for name, t in sorted(tables.items())
            for site, count in sorted(t.get("persons", {}).items())
        ]
        frame = pd.DataFrame(rows, columns=["table", "site", "about", "fewer_than"])
        frame = frame.astype({"about": "Int64", "fewer_than": "Int64"})
        # When the hub last read the sites' catalogues (it re-reads them every few minutes).
        frame.attrs["as_of"] = pd.Timestamp(catalog["as_of_us"], unit="us", tz="UTC")
        return frame

    # -- studies ---------------------------------------------------------------------------

    def studies(self) -> pd.DataFrame:
        """The studies this caller may see, one row each, with the sites' decisions."""
        rows = []
        for s in self._get("/v1/studies")["studies"]:
            by_state: dict[str, list[str]] = {"approved": [], "pending": [], "rejected": []}
            for site, d in sorted(s["sites"].items()):
                by_state.setdefault(d["state"], []).append(site)
            rows.append(
                {
                    "id": s["id"],
                    "title": s["title"],
                    "proposer": s["proposer"],
                    "privacy": s["terms"]["privacy"],
                    "epsilon": s["terms"].get("epsilon"),
                    "analyses": ", ".join(s["terms"]["analyses"]),
                    "approved": by_state["approved"],
                    "pending": by_state["pending"],
                    "rejected": by_state["rejected"],
                }
            )
        columns = ["id", "title", "proposer", "privacy", "epsilon", "analyses", "approved", "pending", "rejected"]
        return pd.DataFrame(rows, columns=columns).set_index("id")

    def study(self, study: str) -> dict[str, Any]:
        """One study as the hub holds it (terms, members, each site's decision)."""
        return self._get(f"/v1/studies/{study}")

    def propose(
        self,
        title: str,
        purpose: str,
        sites: list[str],
        terms: dict[str, Any],
        members: list[str] | None = None,
    ) -> dict[str, Any]:
        """Proposes a study; each site's custodian then approves or rejects it."""
        body = {"title": title, "purpose": purpose, "sites": sites, "terms": terms, "members": members or []}
        return self._post("/v1/studies", body)

    def decide(self, study: str, site: str, approve: bool, reason: str | None = None) -> dict[str, Any]:
        """A custodian's decision on a study for their site."""
        body = {"site": site, "decision": "approve" if approve else "reject", "reason": reason}
        return self._post(f"/v1/studies/{study}/decisions", body)

    def budget(self, study: str) -> pd.DataFrame:
        """Each site's privacy budget for a study: ε and δ allowed, spent and left. The sites
        keep their own ledgers; the hub asks them."""
        sites = self._get(f"/v1/studies/{study}/budget")["sites"]
        rows = [{"site": name, **b} for name, b in sorted(sites.items())]
        columns = ["site", "status", "epsilon", "epsilon_spent", "epsilon_remaining", "delta", "delta_spent", "delta_remaining", "message"]
        return pd.DataFrame(rows, columns=columns).set_index("site")

    # -- analyses --------------------------------------------------------------------------

    def query(
        self,
        sql: str,
        *,
        study: str,
        sites: list[str] | None = None,
        epsilon: float | None = None,
        bounds: dict[str, tuple[float, float]] | None = None,
        max_rows_per_person: int | None = None,
    ) -> FederatedFrame:
        """Runs an aggregate-only SQL query over the study's sites. Suppressed cells are null
        (``.privacy.suppressed`` says which rows and why); ``.sites`` says how each site's part
        ended; in a DP study, pass ``epsilon`` and the ``bounds`` of summed columns."""
        body: dict[str, Any] = {"sql": sql, "study": study}
        optional = {"sites": sites, "epsilon": epsilon, "max_rows_per_person": max_rows_per_person}
        body.update({k: v for k, v in optional.items() if v is not None})
        if bounds is not None:
            body["bounds"] = {k: list(v) for k, v in bounds.items()}
        answer = self._post("/v1/queries", body)
        if answer.get("status") == "awaiting_review":
            raise AwaitingReview(answer)
        return _frame(answer, {"study": study, "sql": sql})

    # -- reviews ---------------------------------------------------------------------------

    def reviews(self) -> pd.DataFrame:
        """Releases held for review that you may see (custodians: their sites'; researchers:
        their own), one row per review: status, study, researcher, checks, each site's decision."""
        reviews = self._send_list("/v1/reviews")
        rows = [
            {
                "id": r["id"],
                "status": r["status"],
                "study": r["study"],
                "researcher": r["researcher"],
                "checks": ", ".join(r.get("checks", {})),
                "sites": ", ".join(f"{s}: {d['decision']}" for s, d in sorted(r.get("sites", {}).items())),
            }
            for r in reviews
        ]
        columns = ["id", "status", "study", "researcher", "checks", "sites"]
        return pd.DataFrame(rows, columns=columns).set_index("id")

    def review(self, review_id: str) -> dict[str, Any]:
        """One review; its ``result`` (a :class:`FederatedFrame`) is there for reviewers, and for
        the researcher once every contributing site approved."""
        r = self._get(f"/v1/reviews/{review_id}")
        if isinstance(r.get("result"), dict):
            r["result"] = _frame(r["result"], {"study": r.get("study"), "sql": r.get("sql"), "review": review_id})
        return r

    def decide_review(
        self, review_id: str, approve: bool, reason: str | None = None, site: str | None = None
    ) -> dict[str, Any]:
        """A custodian's decision on a held release for their site(s) (all the contributing sites
        they hold, unless ``site`` names one)."""
        body = _drop_none({"decision": "approve" if approve else "reject", "reason": reason, "site": site})
        return self._post(f"/v1/reviews/{review_id}", body)

    def glm(
        self,
        formula: str,
        family: str = "gaussian",
        *,
        study: str,
        table: str,
        where: str | None = None,
        weights: str | None = None,
        sites: list[str] | None = None,
        secure_aggregation: bool | None = None,
        register: str | None = None,
    ) -> FederatedFrame:
        """Fits an exact federated GLM (the pooled data's answer). One row per term: estimate,
        standard error, z (or t), p and the 95 % interval; ``.meta`` has n, deviance, AIC…"""
        body = _drop_none(
            {
                "study": study,
                "table": table,
                "formula": formula,
                "family": family,
                "where": where,
                "weights": weights,
                "sites": sites,
                "secure_aggregation": secure_aggregation,
                "register": register,
            }
        )
        fit = self._post("/v1/analyses/glm", body)
        return _coefficient_frame(fit)

    def cox(
        self,
        formula: str,
        *,
        study: str,
        table: str,
        ties: str = "efron",
        where: str | None = None,
        sites: list[str] | None = None,
        secure_aggregation: bool | None = None,
    ) -> FederatedFrame:
        """Fits a Cox model stratified by site (``Surv(time, event) ~ …``); one row per term
        with its hazard ratio."""
        body = _drop_none(
            {
                "study": study,
                "table": table,
                "formula": formula,
                "ties": ties,
                "where": where,
                "sites": sites,
                "secure_aggregation": secure_aggregation,
            }
        )
        fit = self._post("/v1/analyses/cox", body)
        frame = _coefficient_frame(fit)
        ratios = fit.get("hazard_ratios", {})
        frame["hazard_ratio"] = [ratios.get(t, {}).get("estimate") for t in frame.index]
        return frame

    def km(
        self,
        time: str,
        event: str,
        *,
        study: str,
        table: str,
        bin_width: float,
        max_time: float,
        group: str | None = None,
        where: str | None = None,
        sites: list[str] | None = None,
    ) -> FederatedFrame:
        """Kaplan–Meier curves in bins of ``bin_width`` up to ``max_time``: one row per (group,
        bin) with those at risk, events, survival and its 95 % band."""
        body = _drop_none(
            {
                "study": study,
                "table": table,
                "time": time,
                "event": event,
                "group": group,
                "bin_width": bin_width,
                "max_time": max_time,
                "where": where,
                "sites": sites,
            }
        )
        fit = self._post("/v1/analyses/km", body)
        rows = [
            {"group": c["group"], **b}
            for c in fit["curves"]
            for b in c["bins"]
        ]
        columns = ["group", "start", "end", "at_risk", "events", "survival", "lower", "upper"]
        meta = {k: v for k, v in fit.items() if k not in ("curves", "sites", "privacy")}
        meta["n"] = {c["group"]: c["n"] for c in fit["curves"]}
        return FederatedFrame.build(pd.DataFrame(rows, columns=columns), fit, meta)

    # -- the audit trail (auditors) --------------------------------------------------------

    def audit(self, after: int = 0, limit: int = 1000) -> pd.DataFrame:
        """The hub's audit trail from ``after`` on: one row per entry."""
        records = self._get("/v1/audit", params={"after": after, "limit": limit})["records"]
        if not records:
            return pd.DataFrame()
        trail = pd.DataFrame(records).set_index("seq")
        trail.insert(0, "at", pd.to_datetime(trail.pop("at_us"), unit="us", utc=True))
        return trail

    def verify_audit(self) -> dict[str, Any]:
        """Re-walks the hub's hash chain and checkpoints: ``intact`` and any breaks."""
        return self._get("/v1/audit/verify")

    # -- transport -------------------------------------------------------------------------

    def _get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._send("GET", path, params=params)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._send("POST", path, json=body)

    def _send(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        body = self._send_any(method, path, **kw)
        if not isinstance(body, dict):
            raise MedfedError(f"the hub answered {method} {path} with something other than a JSON object")
        return body

    def _send_list(self, path: str) -> list[dict[str, Any]]:
        body = self._send_any("GET", path)
        if not isinstance(body, list):
            raise MedfedError(f"the hub answered GET {path} with something other than a JSON list")
        return body

    def _send_any(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self._http.request(method, path, **kw)
        except httpx.HTTPError as e:
            raise MedfedError(f"cannot reach the hub at {self.url}: {e}") from e
        try:
            body = r.json()
        except ValueError:
            body = r.text
        if r.is_error:
            raise from_response(r.status_code, body)
        return body


def _frame(answer: dict[str, Any], meta: dict[str, Any]) -> FederatedFrame:
    table = pd.DataFrame(answer["rows"], columns=answer["columns"])
    return FederatedFrame.build(table, answer, meta)


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _coefficient_frame(fit: dict[str, Any]) -> FederatedFrame:
    rows = [
        {
            "term": term,
            "estimate": c["estimate"],
            "std_error": c["std_error"],
            "z": c["z"],
            "p": c["p"],
            "ci_low": c["ci95"][0],
            "ci_high": c["ci95"][1],
        }
        for term, c in fit["coefficients"].items()
    ]
    table = pd.DataFrame(rows, columns=["term", "estimate", "std_error", "z", "p", "ci_low", "ci_high"])
    meta = {k: v for k, v in fit.items() if k not in ("coefficients", "sites", "privacy")}
    return FederatedFrame.build(table.set_index("term"), fit, meta)
