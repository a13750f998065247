//! What happens when things go wrong: sites down or hanging, strangers' certificates, a hub
//! asking a site for rows.

use std::time::Duration;

use medfed_core::SiteName;
use medfed_core::result::SiteStatus;
use medfed_core::study::{ApprovalState, StudyTerms};
use medfed_hub::HubConfig;
use medfed_protocol::tls::{NodeTls, TlsPaths};
use medfed_protocol::wire::{RequestContext, Researcher, SiteRequest, StudyGrant};
use medfed_protocol::{SiteCallError, SiteClient};

use crate::support::network;

/// What the hub would send north for an approved study over `person` and `measurement`.
pub fn request(id: &str, site: &str, sql: &str) -> SiteRequest {
    let context = RequestContext {
        study: StudyGrant {
            id: "st-test".into(),
            title: "test".into(),
            terms: StudyTerms::exact_sql(&["person", "measurement"]),
            approval: ApprovalState::Approved,
            approved_by: Some(format!("cust-{site}")),
        },
        researcher: Researcher {
            id: "rita".into(),
            roles: vec!["researcher".into()],
        },
        analysis: "sql".into(),
        privacy: Default::default(),
    };
    SiteRequest::partial_sql(id, site, context, sql)
}

/// The demo hub's request-signing key.
pub fn hub_key(dir: &std::path::Path) -> ed25519_dalek::SigningKey {
    medfed_protocol::signing::load_signing_key(&dir.join("pki/hub/signing.key")).unwrap()
}

fn hub_config(dir: &std::path::Path) -> HubConfig {
    HubConfig::load(&dir.join("hub/hub.toml")).unwrap()
}

fn site_url(cfg: &HubConfig, name: &str) -> String {
    cfg.sites
        .iter()
        .find(|s| s.name.as_str() == name)
        .unwrap()
        .url
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_site_gives_a_partial_answer_that_names_it() {
    let mut net = network(3, 5_000).await;
    let all: i64 = net.query_ok("SELECT COUNT(*) AS n FROM person").await["rows"][0][0]
        .as_i64()
        .unwrap();
    assert_eq!(all, 6_000);
    assert!(net.net.stop_site(&SiteName::new("south").unwrap()).await);

    let body = tokio::time::timeout(
        Duration::from_secs(20),
        net.query_ok("SELECT COUNT(*) AS n FROM person"),
    )
    .await
    .expect("a down site must not hang the query");
    assert_eq!(body["rows"][0][0].as_i64().unwrap(), 4_000, "{body}");
    assert_eq!(body["sites"]["south"]["status"], "failed", "{body}");
    assert!(body["sites"]["south"]["message"].as_str().unwrap().len() > 3);
    assert_eq!(body["sites"]["north"]["status"], "answered");

    for name in ["north", "east"] {
        net.net.stop_site(&SiteName::new(name).unwrap()).await;
    }
    let (status, body) = net
        .post_query("SELECT COUNT(*) FROM person", Some(&net.net.token))
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["kind"], "no_site_answered");
    assert_eq!(body["sites"]["east"]["status"], "failed");
    net.net.shutdown().await;
}

/// A catalogue re-read while a site is down keeps what that site last said: its tables stay
/// plannable (a query then names the site as down) and its published counts stay listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_down_during_a_catalogue_re_read_keeps_its_tables() {
    let mut net = network(2, 5_000).await;
    let before = net.net.hub.tables();
    assert_eq!(before["person"].sites, ["north", "south"]);
    assert!(net.net.stop_site(&SiteName::new("north").unwrap()).await);
    let report = net.net.hub.refresh_catalog().await;
    assert!(
        report["north"].is_err() && report["south"].is_ok(),
        "{report:?}"
    );
    let after = net.net.hub.tables();
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    for (name, t) in &after {
        assert_eq!(t.sites, before[name].sites, "{name}");
        assert_eq!(t.persons, before[name].persons, "{name}");
    }
    let body = net.query_ok("SELECT COUNT(*) AS n FROM person").await;
    assert_eq!(body["sites"]["north"]["status"], "failed", "{body}");
    assert_eq!(body["rows"][0][0].as_i64().unwrap(), 2_000, "{body}");
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_site_times_out_at_its_deadline() {
    let net = network(1, 5_000).await;
    // A "site" that accepts connections and never speaks.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            conns.push(c);
        }
    });
    let mut cfg = hub_config(net.dir.path());
    cfg.site_deadline_ms = 700;
    cfg.sites.push(medfed_hub::config::SiteEntry {
        name: SiteName::new("slow").unwrap(),
        url: format!("https://{addr}"),
    });
    // A second hub on the same state, with its own audit trail (one writer per trail).
    cfg.governance.audit_db = net.dir.path().join("hub/audit-2.db").display().to_string();
    let hub = medfed_hub::Hub::new(&cfg).await.unwrap();
    let bearer = |t: &str| format!("Bearer {t}");
    let rita = hub
        .authenticate(Some(&bearer(&net.token("researcher"))), "t")
        .await
        .unwrap();
    hub.state()
        .add_user("cust-slow", &["custodian".into()], &["slow".into()])
        .await
        .unwrap();
    let t = hub.state().issue_token("cust-slow").await.unwrap();
    let slow_custodian = hub
        .authenticate(Some(&bearer(&t.token)), "t")
        .await
        .unwrap();
    let north_custodian = hub
        .authenticate(Some(&bearer(&net.token("custodian:north"))), "t")
        .await
        .unwrap();
    let new = medfed_hub::state::NewStudy {
        title: "slow".into(),
        purpose: "timeouts".into(),
        sites: vec!["north".into(), "slow".into()],
        members: vec![],
        terms: StudyTerms::exact_sql(&["person"]),
    };
    let study = hub.propose(&rita, &new).await.unwrap();
    hub.decide(&north_custodian, &study.id, "north", true, None)
        .await
        .unwrap();
    hub.decide(&slow_custodian, &study.id, "slow", true, None)
        .await
        .unwrap();
    let r = hub
        .query(
            &rita,
            &study.id,
            "SELECT COUNT(*) AS n FROM person",
            None,
            &Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        r.sites["slow"].status,
        SiteStatus::TimedOut,
        "{:?}",
        r.sites
    );
    assert!(r.sites["slow"].elapsed_ms < 5_000.0);
    assert_eq!(r.sites["north"].status, SiteStatus::Answered);
    assert!(r.is_partial());
    assert_eq!(r.rows[0][0], 2_000);
    held.abort();
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sites_accept_only_the_networks_hub_certificate() {
    let net = network(2, 5_000).await;
    let cfg = hub_config(net.dir.path());
    let north = SiteName::new("north").unwrap();
    let url = site_url(&cfg, "north");

    // The hub's own identity works (the positive control).
    let hub_tls = NodeTls::load(&cfg.tls).unwrap();
    let ok = SiteClient::new(north.clone(), &url, &hub_tls).unwrap();
    assert!(
        ok.catalog()
            .await
            .unwrap()
            .iter()
            .any(|t| t.name == "person")
    );

    // A certificate from another CA (trusting the real CA, so only the client side is wrong).
    let other = tempfile::tempdir().unwrap();
    let foreign =
        medfed_protocol::pki::init(other.path(), "hub", std::slice::from_ref(&north)).unwrap();
    let mut stranger = NodeTls::load(&foreign.hub()).unwrap();
    stranger.ca_pem = hub_tls.ca_pem.clone();
    let client = SiteClient::new(north.clone(), &url, &stranger).unwrap();
    assert!(
        client.catalog().await.is_err(),
        "a foreign CA's certificate was accepted"
    );
    let refused = client
        .run(
            &request("x", "north", "SELECT COUNT(*) AS p0 FROM person"),
            &hub_key(net.dir.path()),
        )
        .await;
    assert!(refused.is_err());

    // Another site's certificate is server-only: one hospital cannot query another.
    let south_paths = TlsPaths {
        cert: net.dir.path().join("pki/sites/south/cert.pem"),
        key: net.dir.path().join("pki/sites/south/key.pem"),
        ca: cfg.tls.ca.clone(),
    };
    let peer = SiteClient::new(north, &url, &NodeTls::load(&south_paths).unwrap()).unwrap();
    assert!(
        peer.catalog().await.is_err(),
        "a site certificate was accepted as a client"
    );
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_refuses_row_level_work_even_from_the_authenticated_hub() {
    let net = network(1, 5_000).await;
    let cfg = hub_config(net.dir.path());
    let client = SiteClient::new(
        SiteName::new("north").unwrap(),
        &site_url(&cfg, "north"),
        &NodeTls::load(&cfg.tls).unwrap(),
    )
    .unwrap();
    let key = hub_key(net.dir.path());
    for (i, sql) in [
        "SELECT person_id, year_of_birth FROM person",
        "SELECT MAX(value_as_number) AS p0 FROM measurement",
        "SELECT person_source_value AS k0, COUNT(*) AS p0 FROM person GROUP BY person_source_value",
    ]
    .into_iter()
    .enumerate()
    {
        match client
            .run(&request(&format!("t{i}"), "north", sql), &key)
            .await
        {
            Err(SiteCallError::Refused(m)) => {
                assert!(m.contains("north") && m.contains("refused"), "{m}")
            }
            other => panic!("{sql}: expected refusal, got {:?}", other.map(|b| b.len())),
        }
    }
    let count = "SELECT COUNT(*) AS p0 FROM person";
    let mut bad = request("v", "north", count);
    bad.version = 99;
    assert!(
        matches!(client.run(&bad, &key).await, Err(SiteCallError::Refused(m)) if m.contains("version"))
    );
    let rows = client
        .run(&request("ok", "north", count), &key)
        .await
        .unwrap();
    assert_eq!(rows[0].num_rows(), 1);

    // Signed by someone else, addressed to another site, or replayed: refused before any work.
    let forger = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let refused = |r: Result<Vec<_>, SiteCallError>, what: &str| match r {
        Err(SiteCallError::Refused(m)) => assert!(m.contains(what), "{m}"),
        other => panic!(
            "expected refusal ({what}), got {:?}",
            other.map(|b| b.len())
        ),
    };
    refused(
        client.run(&request("f", "north", count), &forger).await,
        "not signed",
    );
    refused(
        client.run(&request("s", "south", count), &key).await,
        "addressed to site south",
    );
    refused(
        client.run(&request("ok", "north", count), &key).await,
        "replay",
    );
    net.net.shutdown().await;
}
