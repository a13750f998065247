"""The client against a scripted hub (httpx.MockTransport): the JSON the hub sends becomes the
DataFrames and exceptions a notebook sees."""

from __future__ import annotations

import json
from typing import Any, Callable

import httpx
import pandas as pd
import pytest

import medfed

QUERY_ANSWER = {
    "columns": ["gender_concept_id", "patients"],
    "rows": [[8507, 120], [8532, None]],
    "sites": {
        "north": {"status": "answered", "elapsed_ms": 12.5},
        "south": {"status": "unreachable", "elapsed_ms": 3000.0, "message": "connection refused"},
    },
    "privacy": {
        "mode": "exact",
        "min_cell_count": 10,
        "suppressed": [{"row": 1, "reason": "fewer than 10 people"}],
        "epsilon": 0.0,
        "delta": 0.0,
        "sites": {"north": {"suppressed": 1, "epsilon_spent": 0.0}},
        "secure_aggregation": False,
    },
}


def hub(handler: Callable[[httpx.Request], httpx.Response]) -> medfed.Client:
    return medfed.Client("http://hub.test", "tok", transport=httpx.MockTransport(handler))


def answer(status: int, body: Any) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, json=body)


def test_a_query_is_a_dataframe_with_sites_and_privacy_attached() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=QUERY_ANSWER)

    df = hub(handler).query("SELECT 1", study="s-1", epsilon=0.1, bounds={"age": (0, 120)})
    assert list(df.columns) == ["gender_concept_id", "patients"]
    assert df["patients"].iloc[0] == 120 and pd.isna(df["patients"].iloc[1])
    assert df.privacy.suppressed == {1: "fewer than 10 people"}
    assert df.privacy.min_cell_count == 10
    assert df.sites.loc["south", "status"] == "unreachable"
    assert df.sites.loc["north", "suppressed"] == 1
    assert df.partial
    # the attributes survive slicing
    assert df.head(1).privacy.mode == "exact"
    sent = json.loads(seen[0].content)
    assert sent == {"sql": "SELECT 1", "study": "s-1", "epsilon": 0.1, "bounds": {"age": [0, 120]}}
    assert seen[0].headers["authorization"] == "Bearer tok"


@pytest.mark.parametrize(
    "status,kind,cls",
    [
        (401, "unauthenticated", medfed.Unauthenticated),
        (403, "forbidden", medfed.Forbidden),
        (404, "not_found", medfed.NotFound),
        (400, "invalid", medfed.InvalidRequest),
        (422, "refused", medfed.Refused),
        (503, "no_site_answered", medfed.Unavailable),
        (500, "internal", medfed.MedfedError),
    ],
)
def test_each_refusal_is_its_own_exception_with_the_hubs_sentence(
    status: int, kind: str, cls: type[medfed.MedfedError]
) -> None:
    client = hub(answer(status, {"error": "a sentence for people", "kind": kind}))
    with pytest.raises(cls) as e:
        client.query("SELECT * FROM person", study="s-1")
    assert e.value.status == status and e.value.kind == kind
    assert "a sentence for people" in str(e.value)


def test_an_unreachable_hub_is_a_clear_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(medfed.MedfedError, match="cannot reach the hub at http://hub.test"):
        hub(handler).sites()


def test_a_glm_is_its_coefficient_table() -> None:
    fit = {
        "formula": "y ~ x",
        "family": "binomial",
        "n": 300,
        "deviance": 12.5,
        "coefficients": {
            "(Intercept)": {"estimate": -1.0, "std_error": 0.1, "z": -10.0, "p": 0.0, "ci95": [-1.2, -0.8]},
            "x": {"estimate": 0.5, "std_error": 0.2, "z": 2.5, "p": 0.012, "ci95": [0.1, 0.9]},
        },
        "sites": {"north": {"status": "answered", "elapsed_ms": 1.0}},
        "privacy": {"mode": "exact", "min_cell_count": 5, "suppressed": [], "epsilon": 0, "delta": 0, "sites": {}, "secure_aggregation": True},
    }
    df = hub(answer(200, fit)).glm("y ~ x", "binomial", study="s", table="t")
    assert list(df.index) == ["(Intercept)", "x"]
    assert df.loc["x", "ci_high"] == 0.9
    assert df.meta["n"] == 300 and df.meta["deviance"] == 12.5
    assert df.privacy.secure_aggregation and not df.partial


def test_km_curves_are_one_row_per_group_and_bin() -> None:
    fit = {
        "time": "t",
        "event": "e",
        "group": "arm",
        "curves": [
            {"group": "a", "n": 40, "bins": [{"start": 0, "end": 30, "at_risk": 40, "events": 3, "survival": 0.925, "lower": 0.8, "upper": 0.98}]},
            {"group": "b", "n": 35, "bins": [{"start": 0, "end": 30, "at_risk": 35, "events": 5, "survival": 0.857, "lower": 0.7, "upper": 0.94}]},
        ],
        "sites": {"north": {"status": "answered", "elapsed_ms": 1.0}},
    }
    df = hub(answer(200, fit)).km("t", "e", study="s", table="x", bin_width=30, max_time=90, group="arm")
    assert list(df["group"]) == ["a", "b"]
    assert df.meta["n"] == {"a": 40, "b": 35}
    assert df.privacy.mode == ""  # an answer without a privacy block still reads


def test_studies_sort_sites_by_decision() -> None:
    studies = {
        "studies": [
            {
                "id": "s-1",
                "title": "T2D",
                "proposer": "alice",
                "terms": {"analyses": ["sql", "glm"], "tables": ["person"], "privacy": "exact"},
                "sites": {
                    "north": {"state": "approved"},
                    "south": {"state": "pending"},
                    "east": {"state": "rejected"},
                },
            }
        ]
    }
    df = hub(answer(200, studies)).studies()
    row = df.loc["s-1"]
    assert row["approved"] == ["north"] and row["pending"] == ["south"] and row["rejected"] == ["east"]
    assert row["analyses"] == "sql, glm"


def test_a_held_query_raises_awaiting_review_and_the_review_gives_the_result_once_approved() -> None:
    held = {
        "id": "r-1",
        "status": "awaiting_review",
        "study": "s-1",
        "researcher": "dr.who",
        "sql": "SELECT 1",
        "checks": {"differencing": 1},
        "sites": {"north": {"decision": "approved", "decided_by": "c.north"}, "south": {"decision": "pending"}},
        "created_at_us": 1,
        "evidence": {"checks": [{"check": "differencing", "outcome": "review"}], "rows": ["released"]},
    }
    approved = {**held, "status": "approved", "result": QUERY_ANSWER}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/queries":
            return httpx.Response(202, json=held)
        if request.url.path == "/v1/reviews":
            return httpx.Response(200, json=[held])
        return httpx.Response(200, json=approved)

    client = hub(handler)
    with pytest.raises(medfed.AwaitingReview) as e:
        client.query("SELECT 1", study="s-1")
    assert e.value.id == "r-1" and "differencing" in str(e.value)
    queue = client.reviews()
    assert queue.loc["r-1", "sites"] == "north: approved, south: pending"
    result = client.review("r-1")["result"]
    assert list(result.columns) == ["gender_concept_id", "patients"]
    assert result.privacy.suppressed == {1: "fewer than 10 people"}
