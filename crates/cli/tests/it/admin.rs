//! The people-and-studies commands against a running hub: `medfed hub user …` (on the hub's own
//! state) and `medfed study …` (over its API).

use crate::cli::{medfed, stdout};
use crate::support::network;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_studies_from_the_command_line() {
    let net = network(2, 10_000).await;
    let config = net.dir.path().join("hub/hub.toml").display().to_string();
    let url = net.net.hub_url.clone();
    let custodian = net.token("custodian:north");
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            medfed(&args.iter().map(String::as_str).collect::<Vec<_>>())
        })
    };
    let args = |s: &[&str]| s.iter().map(|a| a.to_string()).collect::<Vec<_>>();

    let o = run(args(&[
        "hub",
        "user",
        "add",
        "dana",
        "--role",
        "researcher",
        "--config",
        &config,
    ]))
    .await
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let token = stdout(&o)
        .split_whitespace()
        .find(|w| w.starts_with("mf_"))
        .unwrap()
        .to_string();
    let token_id = token.split('_').nth(1).unwrap().to_string();
    let o = run(args(&[
        "hub",
        "user",
        "add",
        "carl",
        "--role",
        "custodian",
        "--config",
        &config,
    ]))
    .await
    .unwrap();
    assert!(
        !o.status.success() && stderr(&o).contains("--site"),
        "{}",
        stderr(&o)
    );
    let o = run(args(&["hub", "user", "list", "--config", &config]))
        .await
        .unwrap();
    assert!(
        stdout(&o).contains("dana") && stdout(&o).contains(&token_id),
        "{}",
        stdout(&o)
    );

    let hub = |t: &str| {
        vec![
            "--hub".to_string(),
            url.clone(),
            "--token".to_string(),
            t.to_string(),
        ]
    };
    let mut propose = args(&[
        "study",
        "propose",
        "--title",
        "Sex ratio",
        "--purpose",
        "demo",
        "--site",
        "north",
        "--table",
        "person",
    ]);
    propose.extend(hub(&token));
    let o = run(propose).await.unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o)
        .split_whitespace()
        .find(|w| w.starts_with("st-"))
        .unwrap()
        .to_string();

    let mut approve_as_dana = args(&["study", "approve", &id, "--site", "north"]);
    approve_as_dana.extend(hub(&token));
    let o = run(approve_as_dana).await.unwrap();
    assert!(
        !o.status.success() && stderr(&o).contains("403"),
        "{}",
        stderr(&o)
    );
    let mut approve = args(&[
        "study",
        "approve",
        &id,
        "--site",
        "north",
        "--reason",
        "IRB 2026-17",
    ]);
    approve.extend(hub(&custodian));
    let o = run(approve).await.unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    let mut list = args(&["study", "list", "--json"]);
    list.extend(hub(&token));
    let studies: serde_json::Value =
        serde_json::from_str(&stdout(&run(list).await.unwrap())).unwrap();
    let mine = studies
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id.as_str())
        .unwrap();
    assert_eq!(mine["sites"]["north"]["state"], "approved");
    assert_eq!(mine["sites"]["north"]["reason"], "IRB 2026-17");

    let query = |t: &str| {
        let mut q = args(&[
            "query",
            "--study",
            &id,
            "--format",
            "csv",
            "SELECT COUNT(*) AS n FROM person",
        ]);
        q.extend(hub(t));
        q
    };
    let o = run(query(&token)).await.unwrap();
    assert_eq!(stdout(&o), "n\n2000\n", "{}", stderr(&o));

    let o = run(args(&[
        "hub", "user", "revoke", &token_id, "--config", &config,
    ]))
    .await
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(query(&token)).await.unwrap();
    assert!(
        !o.status.success() && stderr(&o).contains("401"),
        "{}",
        stderr(&o)
    );
    net.net.shutdown().await;
}
