//! The model registry: a released GLM registered as versions, read back over HTTP and with
//! `medfed model`, linked to the audit trail, and kept from who may not read its study.

use serde_json::{Value, json};

use crate::cli::{medfed, stdout};
use crate::glm::{simulated_sites, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fits_are_registered_as_versions_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let files = simulated_sites(dir.path());
    let net = start(&dir.path().join("net"), "sim", files).await;
    let http = reqwest::Client::new();
    let rita = net.tokens["researcher"].clone();
    let fit = async |formula: &str, register: &str| {
        let r = http
            .post(format!("{}/v1/analyses/glm", net.hub_url))
            .bearer_auth(&rita)
            .json(
                &json!({"study": net.studies["exact"], "table": "sim", "formula": formula,
                          "family": "binomial", "register": register}),
            )
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    let (status, first) = fit("yb ~ x", "risk").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["registered"], json!({"model": "risk", "version": 1}));
    let (status, second) = fit("yb ~ x + sex", "risk").await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["registered"]["version"], 2);
    let (status, bad) = fit("yb ~ x", "no spaces please").await;
    assert_eq!(status, 400, "{bad}");

    let get = async |path: &str, token: &str| {
        let r = http
            .get(format!("{}/v1/{path}", net.hub_url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    let (status, versions) = get("models/risk", &rita).await;
    assert_eq!(status, 200, "{versions}");
    let versions = versions.as_array().unwrap();
    assert_eq!(versions.len(), 2);
    let v2 = &versions[1];
    assert_eq!(v2["kind"], "glm/binomial");
    assert_eq!(v2["parameters"]["formula"], "yb ~ x + sex");
    assert_eq!(v2["artifact"]["coefficients"], second["coefficients"]);
    assert_eq!(v2["metrics"]["n"], second["n"]);
    assert_eq!(v2["sites"].as_array().unwrap().len(), 3);
    // The digest is the release's in the audit trail, and the registration is audited too.
    let (_, audit) = get("audit?limit=200", &net.tokens["auditor"]).await;
    let entries = audit
        .as_array()
        .or_else(|| audit["records"].as_array())
        .unwrap();
    let digest = v2["audit_digest"].as_str().unwrap();
    let with_digest: Vec<&Value> = entries
        .iter()
        .filter(|e| e.to_string().contains(digest))
        .collect();
    assert!(
        with_digest
            .iter()
            .any(|e| e.to_string().contains("\"glm\"")),
        "{audit}"
    );
    assert!(
        with_digest
            .iter()
            .any(|e| e.to_string().contains("model.register")),
        "{audit}"
    );

    assert_eq!(get("models/none-such", &rita).await.0, 404);
    assert_eq!(get("models", "not-a-token").await.0, 401);

    // The CLI: list, and export the latest version's coefficients.
    let (hub, out) = (net.hub_url.clone(), dir.path().join("risk.json"));
    let (list, export) = tokio::task::spawn_blocking({
        let (rita, out) = (rita.clone(), out.clone());
        move || {
            let list = medfed(&["model", "list", "--hub", &hub, "--token", &rita]);
            let export = medfed(&[
                "model",
                "export",
                "risk",
                "--hub",
                &hub,
                "--token",
                &rita,
                "--out",
                out.to_str().unwrap(),
            ]);
            (list, export)
        }
    })
    .await
    .unwrap();
    assert!(
        list.status.success() && stdout(&list).contains("glm/binomial"),
        "{list:?}"
    );
    assert!(export.status.success(), "{export:?}");
    let exported: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(exported["version"], 2);
    assert_eq!(
        exported["model_spec"]["coefficients"],
        second["coefficients"]
    );
    net.shutdown().await;
}
