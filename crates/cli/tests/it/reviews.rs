//! Evidence and review: every release says which checks ran on it; a check the network marks
//! "review" holds the result until a custodian of every contributing site approves it.

use serde_json::{Value, json};

use crate::support::{Net, network, network_with};

const TOTAL: &str = "SELECT COUNT(*) AS n FROM person";
const ALL_BUT_THREE: &str = "SELECT COUNT(*) AS n FROM person WHERE person_id NOT IN (1, 2, 3)";

fn checks(body: &Value) -> Vec<(String, String)> {
    body["privacy"]["evidence"]["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no evidence: {body}"))
        .iter()
        .map(|c| {
            (
                c["check"].as_str().unwrap().to_string(),
                c["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn audit_reasons(net: &Net) -> Vec<(String, String, String)> {
    let (status, body) = net
        .call(
            "GET",
            "/v1/audit?limit=10000",
            None,
            Some(&net.token("auditor")),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["records"]
        .as_array()
        .or(body.as_array())
        .unwrap()
        .iter()
        .map(|r| {
            let e = if r["entry"].is_object() {
                &r["entry"]
            } else {
                r
            };
            (
                e["action"].as_str().unwrap_or("").to_string(),
                e["decision"].as_str().unwrap_or("").to_string(),
                e["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_release_carries_its_evidence_per_row_and_in_the_audit_trail() {
    let net = network(2, 10_000).await;
    let sql = "SELECT year_of_birth, COUNT(*) AS n FROM person GROUP BY 1 ORDER BY 1";
    let (status, body) = net.research("exact", sql, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let evidence = &body["privacy"]["evidence"];
    assert_eq!(
        evidence["rows"].as_array().unwrap().len(),
        body["rows"].as_array().unwrap().len()
    );
    assert!(
        evidence["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r == "released")
    );
    let checks = checks(&body);
    let names: Vec<&str> = checks.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "min_cell_count",
            "dominance",
            "shared_value",
            "complementary",
            "differencing"
        ],
        "{evidence}"
    );
    // Small years were withheld under secure aggregation: k says so, with how many.
    let k = &evidence["checks"][0];
    assert_eq!(k["outcome"], "withheld", "{evidence}");
    assert_eq!(
        k["withheld"],
        body["privacy"]["withheld_groups"]
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .clone()
    );
    let audit = audit_reasons(&net).await;
    let released = audit
        .iter()
        .rev()
        .find(|(action, decision, _)| action == "query" && decision == "allow")
        .unwrap();
    assert!(
        released
            .2
            .contains("checks: min_cell_count (k = 10): withheld")
            && released.2.contains("rows: 0-"),
        "{}",
        released.2
    );
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewed_check_holds_the_result_until_every_site_approves() {
    let privacy = medfed_hub::config::NetworkPrivacy {
        review: medfed_privacy::Review {
            differencing: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let net = network_with(3, 10_000, privacy).await;
    let researcher = net.token("researcher");
    assert_eq!(net.research("exact", TOTAL, json!({})).await.0, 200);
    // All patients but three: differencing fires, and is held instead of refused.
    let (status, held) = net.research("exact", ALL_BUT_THREE, json!({})).await;
    assert_eq!(status, 202, "{held}");
    assert_eq!(held["status"], "awaiting_review");
    assert!(held["checks"]["differencing"].is_number(), "{held}");
    assert!(
        held.get("result").is_none(),
        "the researcher sees no result yet: {held}"
    );
    let id = held["id"].as_str().unwrap().to_string();
    // The sites that answered contributed: a custodian of each must approve.
    let sites: Vec<String> = held["sites"].as_object().unwrap().keys().cloned().collect();
    assert!(sites.len() >= 2, "{held}");
    let path = format!("/v1/reviews/{id}");
    // The researcher can follow it but not decide it.
    let (status, mine) = net.call("GET", &path, None, Some(&researcher)).await;
    assert_eq!(status, 200, "{mine}");
    assert!(mine.get("result").is_none());
    let approve = |site: Option<&str>| json!({ "decision": "approve", "site": site });
    let (status, _) = net
        .call("POST", &path, Some(approve(None)), Some(&researcher))
        .await;
    assert_eq!(status, 403);
    // A custodian sees it in their queue, with the result and its evidence.
    let first = net.token(&format!("custodian:{}", sites[0]));
    let (status, queue) = net.call("GET", "/v1/reviews", None, Some(&first)).await;
    assert_eq!(status, 200, "{queue}");
    let queued = &queue.as_array().unwrap()[0];
    assert_eq!(queued["id"], id.as_str());
    assert!(queued["result"]["rows"].is_array(), "{queued}");
    let outcomes: Vec<_> = queued["evidence"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["check"].clone(), c["outcome"].clone()))
        .collect();
    assert!(
        outcomes.contains(&(json!("differencing"), json!("review"))),
        "{queued}"
    );
    // A custodian cannot decide for another site.
    let (status, body) = net
        .call("POST", &path, Some(approve(Some(&sites[1]))), Some(&first))
        .await;
    assert_eq!(status, 403, "{body}");
    // All approvals but one: still waiting.
    for site in &sites[..sites.len() - 1] {
        let token = net.token(&format!("custodian:{site}"));
        let (status, r) = net
            .call("POST", &path, Some(approve(None)), Some(&token))
            .await;
        assert_eq!(status, 200, "{r}");
        assert_eq!(r["status"], "awaiting_review");
    }
    let (_, mine) = net.call("GET", &path, None, Some(&researcher)).await;
    assert!(mine.get("result").is_none(), "{mine}");
    let last = net.token(&format!("custodian:{}", sites[sites.len() - 1]));
    let (status, r) = net
        .call("POST", &path, Some(approve(None)), Some(&last))
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["status"], "approved");
    // Now the researcher gets it, and the release is audited with its digest.
    let (_, mine) = net.call("GET", &path, None, Some(&researcher)).await;
    assert_eq!(mine["status"], "approved");
    let n = mine["result"]["rows"][0][0].as_i64().unwrap();
    assert!(n > 1000, "{mine}");
    let audit = audit_reasons(&net).await;
    let held_entries = audit
        .iter()
        .filter(|a| a.2.contains(&format!("held for review {id}")))
        .count();
    let decisions = audit
        .iter()
        .filter(|a| a.0 == "review.decide" && a.1 == "allow")
        .count();
    assert_eq!((held_entries, decisions), (1, sites.len()), "{audit:?}");

    // A second held query: one rejection closes it unreleased.
    let (status, held) = net
        .research(
            "exact",
            "SELECT COUNT(*) AS n FROM person WHERE person_id NOT IN (4, 5)",
            json!({}),
        )
        .await;
    assert_eq!(status, 202, "{held}");
    let path = format!("/v1/reviews/{}", held["id"].as_str().unwrap());
    let sites: Vec<String> = held["sites"].as_object().unwrap().keys().cloned().collect();
    let custodian = |i: usize| net.token(&format!("custodian:{}", sites[i]));
    let reject = json!({ "decision": "reject", "reason": "singles out two patients" });
    let (status, r) = net
        .call("POST", &path, Some(reject), Some(&custodian(0)))
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["status"], "rejected");
    assert_eq!(r["sites"][&sites[0]]["reason"], "singles out two patients");
    let (status, _) = net
        .call("POST", &path, Some(approve(None)), Some(&custodian(1)))
        .await;
    assert_eq!(status, 403, "a closed review cannot be approved");
    let (_, mine) = net.call("GET", &path, None, Some(&researcher)).await;
    assert_eq!(mine["status"], "rejected");
    assert!(mine.get("result").is_none());
    // The queue lists both, newest first, each with its own sites' decisions.
    let (status, queue) = net
        .call("GET", "/v1/reviews", None, Some(&custodian(0)))
        .await;
    assert_eq!(status, 200, "{queue}");
    let queue = queue.as_array().unwrap();
    assert_eq!(queue.len(), 2, "{queue:?}");
    assert_eq!(queue[0]["status"], "rejected");
    assert_eq!(queue[0]["sites"][&sites[0]]["decision"], "rejected");
    assert_eq!(
        queue[0]["sites"][&sites[0]]["reason"],
        "singles out two patients"
    );
    assert_eq!(queue[1]["status"], "approved");
    let approved = queue[1]["sites"].as_object().unwrap();
    assert!(
        approved.values().all(|s| s["decision"] == "approved"),
        "{approved:?}"
    );
    net.net.shutdown().await;
}
