//! The research portal (`web/`), served by the hub: its assets and headers over HTTP here, and
//! what people do with it in headless Chromium (`web/tests/portal.test.mjs`, driven by
//! playwright-core against `medfed demo` from this build). The browser test says it skipped
//! where Node, Chromium or `web/node_modules` is missing (`apt-get install chromium`,
//! `npm ci --prefix web`); its screenshots land in `target/tmp/portal-screenshots/`.

use std::path::Path;
use std::process::Command;

use crate::support::network;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_is_served_from_the_binary_under_a_strict_content_security_policy() {
    let net = network(1, 10_000).await;
    let url = &net.net.hub_url;
    let index = net.http.get(format!("{url}/")).send().await.unwrap();
    assert_eq!(index.status(), 200);
    let csp = index.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(
        csp.contains("connect-src 'self';"),
        "no IdP configured: {csp}"
    );
    assert_eq!(index.headers()["cache-control"], "no-cache");
    let html = index.text().await.unwrap();
    assert!(html.contains("medfed"), "{html}");
    // Every script and stylesheet the page names is served, with its type, cacheable for good.
    let assets: Vec<&str> = html
        .split('"')
        .filter(|s| s.starts_with("/assets/"))
        .collect();
    assert!(assets.iter().any(|a| a.ends_with(".js")), "{html}");
    for asset in assets {
        let r = net.http.get(format!("{url}{asset}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        let kind = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(
            kind.contains("javascript") || kind.contains("css"),
            "{asset}: {kind}"
        );
        assert!(
            r.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
    }
    let missing = net
        .http
        .get(format!("{url}/assets/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    // Without [oidc] the portal offers token sign-in only; the config needs no token.
    let config: serde_json::Value = net
        .http
        .get(format!("{url}/portal/config.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config, serde_json::json!({"oidc": null}));
    net.net.shutdown().await;
}

#[test]
fn researchers_custodians_and_auditors_do_their_work_in_a_real_browser() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web");
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let driver = web.join("node_modules/playwright-core").exists();
    let (Some(chromium), true, true) = (chromium, node, driver) else {
        eprintln!(
            "skipped: the browser test needs node, chromium (apt-get install chromium) and \
             web/node_modules (npm ci --prefix web)"
        );
        return;
    };
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("portal-screenshots");
    let out = Command::new("node")
        .args(["--test", "tests/portal.test.mjs"])
        .current_dir(&web)
        .env("MEDFED_BIN", env!("CARGO_BIN_EXE_medfed"))
        .env("CHROMIUM", chromium)
        .env("MEDFED_SCREENSHOTS", &shots)
        .env_remove("MEDFED_DEMO_JSON")
        .output()
        .expect("node runs");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser tests failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("# fail 0") && report.contains("# skipped 0"),
        "{report}"
    );
    assert!(!report.contains("# pass 0"), "{report}");
    for shot in [
        "researcher-query",
        "custodian-approvals",
        "custodian-review",
        "auditor-trail",
    ] {
        assert!(
            shots.join(format!("{shot}.png")).exists(),
            "{shot}.png saved"
        );
    }
}
