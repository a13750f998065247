"""The client against a running ``medfed demo`` (see conftest.py): every call a notebook makes,
and the refusals it must see as exceptions."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

import medfed


def as_(demo: dict[str, Any], role: str) -> medfed.Client:
    return medfed.Client.from_demo(demo["path"], role)


def test_the_network_its_sites_and_catalogue(demo: dict[str, Any]) -> None:
    hub = as_(demo, "researcher")
    sites = hub.sites()
    assert len(sites) == 3 and (sites["status"] == "up").all()
    catalog = hub.catalog()
    person = catalog[catalog["table"] == "person"]
    assert "year_of_birth" in set(person["column"])
    assert person.loc[person["column"] == "person_id", "identifier"].all()
    # Person counts are each site's rounded figure, never an exact one.
    counts = hub.persons()
    age = pd.Timestamp.now(tz="UTC") - counts.attrs["as_of"]
    assert pd.Timedelta(0) <= age < pd.Timedelta(hours=1), age
    persons = counts.set_index(["table", "site"])
    for site in sites.index:
        about = persons.loc[("person", site), "about"]
        assert about >= 10 and about % 10 == 0, about


def test_a_query_comes_back_as_a_dataframe_with_each_sites_status(demo: dict[str, Any]) -> None:
    hub = as_(demo, "researcher")
    df = hub.query(
        "SELECT gender_concept_id, COUNT(*) AS n FROM person GROUP BY gender_concept_id ORDER BY 1",
        study=demo["studies"]["exact"],
    )
    assert list(df.columns) == ["gender_concept_id", "n"]
    assert df["n"].sum() > 0
    assert (df.sites["status"] == "answered").all() and not df.partial
    assert df.privacy.mode == "exact" and df.privacy.min_cell_count > 0


def test_a_dp_query_spends_budget_and_says_how_much_is_left(demo: dict[str, Any]) -> None:
    hub = as_(demo, "researcher")
    study = demo["studies"]["dp"]
    before = hub.budget(study)
    assert (before["status"] == "answered").all()
    df = hub.query(
        "SELECT AVG(year_of_birth) AS mean_birth_year FROM person",
        study=study,
        epsilon=0.05,
        bounds={"year_of_birth": (1900, 2030)},
    )
    assert df.privacy.mode == "dp" and df.privacy.epsilon == pytest.approx(0.05)
    after = hub.budget(study)
    spent = after["epsilon_spent"] - before["epsilon_spent"]
    assert (spent.round(9) == 0.05).all()
    assert (after["epsilon_remaining"] == df.sites["epsilon_remaining"]).all()


def test_disclosive_and_unauthorised_requests_are_exceptions(demo: dict[str, Any]) -> None:
    hub = as_(demo, "researcher")
    with pytest.raises(medfed.Refused):
        hub.query("SELECT person_id, year_of_birth FROM person", study=demo["studies"]["exact"])
    with pytest.raises(medfed.Forbidden):
        hub.query("SELECT COUNT(*) AS n FROM person", study=demo["studies"]["unapproved"])
    with pytest.raises(medfed.InvalidRequest):
        hub.query("SELEKT nonsense", study=demo["studies"]["exact"])
    with pytest.raises(medfed.Forbidden):
        hub.audit()
    with pytest.raises(medfed.Unauthenticated):
        medfed.Client(demo["hub_url"], "not-a-token").sites()


def test_a_glm_is_a_coefficient_table(demo: dict[str, Any]) -> None:
    hub = as_(demo, "researcher")
    fit = hub.glm(
        "year_of_birth ~ factor(gender_concept_id)",
        "gaussian",
        study=demo["studies"]["exact"],
        table="person",
    )
    assert "(Intercept)" in fit.index
    assert {"estimate", "std_error", "p", "ci_low", "ci_high"} <= set(fit.columns)
    assert fit.meta["n"] > 0 and fit.meta["converged"]


def test_the_auditor_reads_and_verifies_the_trail(demo: dict[str, Any]) -> None:
    auditor = as_(demo, "auditor")
    trail = auditor.audit(limit=50)
    assert len(trail) > 0 and {"actor", "action", "decision"} <= set(trail.columns)
    assert auditor.verify_audit()["intact"]


def test_a_custodian_decides_for_their_own_site_only(demo: dict[str, Any]) -> None:
    rita = as_(demo, "researcher")
    study = rita.propose(
        "Python client test",
        "checks the notebook client",
        ["north", "south"],
        {"analyses": ["sql"], "tables": ["person"], "privacy": "exact"},
    )
    north = as_(demo, "custodian:north")
    decided = north.decide(study["id"], "north", approve=True, reason="fine")
    assert decided["sites"]["north"]["state"] == "approved"
    assert decided["sites"]["south"]["state"] == "pending"
    with pytest.raises(medfed.Forbidden):
        north.decide(study["id"], "south", approve=True)
    assert rita.studies().loc[study["id"], "approved"] == ["north"]
