//! What happens when things go wrong: sites down or hanging, strangers' certificates, a hub
//! asking a site for rows.

use std::time::Duration;

use medfed_core::SiteName;
use medfed_core::result::SiteStatus;
use medfed_hub::HubConfig;
use medfed_protocol::tls::{NodeTls, TlsPaths};
use medfed_protocol::wire::SiteRequest;
use medfed_protocol::{SiteCallError, SiteClient};

use crate::support::network;

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
    let hub = medfed_hub::Hub::new(&cfg).await.unwrap();
    let r = hub
        .query("SELECT COUNT(*) AS n FROM person", None)
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
            .any(|(t, _)| t == "person")
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
        .run(&SiteRequest::partial_sql(
            "x",
            "SELECT COUNT(*) AS p0 FROM person",
        ))
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
    for sql in [
        "SELECT person_id, year_of_birth FROM person",
        "SELECT MAX(value_as_number) AS p0 FROM measurement",
        "SELECT person_source_value AS k0, COUNT(*) AS p0 FROM person GROUP BY person_source_value",
    ] {
        match client.run(&SiteRequest::partial_sql("t", sql)).await {
            Err(SiteCallError::Refused(m)) => {
                assert!(m.contains("north") && m.contains("refused"), "{m}")
            }
            other => panic!("{sql}: expected refusal, got {:?}", other.map(|b| b.len())),
        }
    }
    let mut bad = SiteRequest::partial_sql("t", "SELECT COUNT(*) AS p0 FROM person");
    bad.version = 99;
    assert!(
        matches!(client.run(&bad).await, Err(SiteCallError::Refused(m)) if m.contains("version"))
    );
    let rows = client
        .run(&SiteRequest::partial_sql(
            "t",
            "SELECT COUNT(*) AS p0 FROM person",
        ))
        .await
        .unwrap();
    assert_eq!(rows[0].num_rows(), 1);
    net.net.shutdown().await;
}
