//! Governance end to end: tokens and JWTs, roles, study approval, data minimisation, each site's
//! own policy, and the audit trail.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

use crate::support::{Net, network};

/// Every route of the API, with a body where it takes one.
fn routes(net: &Net) -> Vec<(&'static str, String, Option<Value>)> {
    let study = net.net.studies["exact"].clone();
    vec![
        ("GET", "/v1/whoami".into(), None),
        ("GET", "/v1/sites".into(), None),
        ("GET", "/v1/catalog".into(), None),
        ("GET", "/v1/studies".into(), None),
        ("GET", format!("/v1/studies/{study}"), None),
        ("POST", "/v1/studies".into(), Some(json!({}))),
        (
            "POST",
            format!("/v1/studies/{study}/decisions"),
            Some(json!({"site": "north", "decision": "approve"})),
        ),
        (
            "POST",
            "/v1/queries".into(),
            Some(json!({"sql": "SELECT COUNT(*) FROM person", "study": study})),
        ),
        ("GET", "/v1/audit".into(), None),
        ("GET", "/v1/audit/verify".into(), None),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_refuses_missing_forged_and_revoked_tokens_and_audits_it() {
    let net = network(1, 10_000).await;
    let state = net.net.hub.state();
    let revoked = state.issue_token("rita").await.unwrap();
    state.revoke_token(&revoked.id).await.unwrap();
    let expired = state
        .issue_token_until("rita", Some(medfed_audit::db::now_us() - 1_000_000))
        .await
        .unwrap();
    let real = net.token("researcher");
    // Right id, wrong secret: only argon2 can tell.
    let forged = format!("{}{}", &real[..20], "0".repeat(real.len() - 20));
    let jwt_without_sso = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJldmUifQ.c2ln";
    for (method, path, body) in routes(&net) {
        for token in [
            None,
            Some("garbage"),
            Some(forged.as_str()),
            Some(revoked.token.as_str()),
            Some(expired.token.as_str()),
            Some(jwt_without_sso),
        ] {
            let (status, reply) = net.call(method, &path, body.clone(), token).await;
            assert_eq!(status, 401, "{method} {path} with {token:?}: {reply}");
            assert_eq!(reply["kind"], "unauthenticated");
        }
    }
    let (status, me) = net.call("GET", "/v1/whoami", None, Some(&real)).await;
    assert_eq!((status, me["id"].as_str()), (200, Some("rita")));
    let records = net.net.hub.audit().records(0, 10_000).await.unwrap();
    let refusals = records
        .iter()
        .filter(|r| r.entry.decision == medfed_audit::Decision::Deny && r.entry.actor != "rita")
        .count();
    assert_eq!(refusals, routes(&net).len() * 6, "each 401 is audited");
    assert!(
        records
            .iter()
            .all(|r| !r.entry.reason.contains(&real[20..])),
        "no secrets in the trail"
    );
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_is_the_custodians_and_only_for_their_own_site() {
    let net = network(2, 10_000).await;
    let proposal = json!({
        "title": "Statins", "purpose": "Statin use by sex", "sites": ["north", "south"],
        "terms": {"analyses": ["sql"], "tables": ["person", "drug_exposure"], "privacy": "exact"}
    });
    let (status, study) = net
        .call(
            "POST",
            "/v1/studies",
            Some(proposal.clone()),
            Some(&net.token("researcher")),
        )
        .await;
    assert_eq!(status, 201, "{study}");
    let id = study["id"].as_str().unwrap().to_string();
    assert_eq!(study["sites"]["north"]["state"], "pending");
    let (status, _) = net
        .call(
            "POST",
            "/v1/studies",
            Some(proposal),
            Some(&net.token("auditor")),
        )
        .await;
    assert_eq!(status, 403, "auditors do not propose");

    let decide =
        |site: &str, decision: &str| json!({"site": site, "decision": decision, "reason": "ok"});
    let path = format!("/v1/studies/{id}/decisions");
    // A researcher cannot approve; a custodian of north cannot approve for south.
    let (status, body) = net
        .call(
            "POST",
            &path,
            Some(decide("north", "approve")),
            Some(&net.token("researcher")),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = net
        .call(
            "POST",
            &path,
            Some(decide("south", "approve")),
            Some(&net.token("custodian:north")),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not the custodian of site south"),
        "{body}"
    );

    // Before any approval the study cannot be queried.
    let sql = "SELECT COUNT(*) AS n FROM person";
    let (status, body) = net
        .post_query_in(sql, &id, Some(&net.token("researcher")))
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no site has approved"),
        "{body}"
    );

    // North approves, south rejects: the query runs at north only, and asking south is refused.
    let (status, body) = net
        .call(
            "POST",
            &path,
            Some(decide("north", "approve")),
            Some(&net.token("custodian:north")),
        )
        .await;
    assert_eq!(
        (status, body["sites"]["north"]["state"].as_str()),
        (200, Some("approved")),
        "{body}"
    );
    let (status, _) = net
        .call(
            "POST",
            &path,
            Some(decide("south", "reject")),
            Some(&net.token("custodian:south")),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = net
        .post_query_in(sql, &id, Some(&net.token("researcher")))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"][0][0], 2000);
    assert!(body["sites"].get("south").is_none(), "{body}");
    let only_south = json!({"sql": sql, "study": id, "sites": ["south"]});
    let (status, body) = net
        .call(
            "POST",
            "/v1/queries",
            Some(only_south),
            Some(&net.token("researcher")),
        )
        .await;
    assert_eq!(status, 403, "{body}");

    // Another researcher, not a member, cannot run it; an unknown study is 404.
    net.net
        .hub
        .state()
        .add_user("eve", &["researcher".into()], &[])
        .await
        .unwrap();
    let eve = net.net.hub.state().issue_token("eve").await.unwrap().token;
    let (status, body) = net.post_query_in(sql, &id, Some(&eve)).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = net.post_query_in(sql, "st-nope", Some(&eve)).await;
    assert_eq!(status, 404);

    // Data minimisation: drug_exposure and person are in the terms, measurement is not.
    let (status, body) = net
        .post_query_in(
            "SELECT COUNT(*) FROM measurement",
            &id,
            Some(&net.token("researcher")),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("measurement is outside the terms"),
        "{body}"
    );
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columns_outside_a_studys_terms_are_refused() {
    let net = network(1, 10_000).await;
    let hub = &net.net.hub;
    let who = |t: String| async move {
        hub.authenticate(Some(&format!("Bearer {t}")), "t")
            .await
            .unwrap()
    };
    let rita = who(net.token("researcher")).await;
    let custodian = who(net.token("custodian:north")).await;
    let terms: medfed_core::study::StudyTerms = serde_json::from_value(json!({
        "analyses": ["sql"], "tables": ["person"], "columns": ["person.gender_concept_id"], "privacy": "exact"
    }))
    .unwrap();
    let new = medfed_hub::state::NewStudy {
        title: "sex only".into(),
        purpose: "minimal".into(),
        sites: vec!["north".into()],
        members: vec![],
        terms,
    };
    let study = hub.propose(&rita, &new).await.unwrap();
    hub.decide(&custodian, &study.id, "north", true, None)
        .await
        .unwrap();
    let ok = hub
        .query(
            &rita,
            &study.id,
            "SELECT gender_concept_id, COUNT(*) FROM person GROUP BY 1",
            None,
            &Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(ok.rows.len(), 2);
    let err = hub
        .query(
            &rita,
            &study.id,
            "SELECT COUNT(*) FROM person WHERE year_of_birth < 1950",
            None,
            &Default::default(),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("person.year_of_birth is outside the terms"),
        "{err}"
    );
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_enforces_its_own_policy_on_signed_hub_requests_and_reloads_it_live() {
    let net = network(2, 10_000).await;
    let study = net.net.studies["exact"].clone();
    let policy = net.dir.path().join("sites/north/policy.rego");
    let original = std::fs::read_to_string(&policy).unwrap();
    // The hub approved the study everywhere; north's custodian now blocks it locally.
    std::fs::write(
        &policy,
        original.replace(
            "blocked_studies := set()",
            &format!("blocked_studies := {{\"{study}\"}}"),
        ),
    )
    .unwrap();
    let (status, body) = net
        .post_query(
            "SELECT COUNT(*) AS n FROM person",
            Some(&net.token("researcher")),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sites"]["north"]["status"], "refused", "{body}");
    let msg = body["sites"]["north"]["message"].as_str().unwrap();
    assert!(
        msg.contains("refused by site policy") && msg.contains("blocked at this site"),
        "{msg}"
    );
    assert_eq!(body["sites"]["south"]["status"], "answered");
    assert_eq!(body["rows"][0][0], 2000, "only south's patients");

    // A typo keeps the blocking policy in force; restoring the file reopens the site.
    std::fs::write(&policy, "package medfed.site\nallow if {").unwrap();
    let (_, body) = net
        .post_query(
            "SELECT COUNT(*) AS n FROM person",
            Some(&net.token("researcher")),
        )
        .await;
    assert_eq!(body["sites"]["north"]["status"], "refused", "{body}");
    std::fs::write(&policy, &original).unwrap();
    let (_, body) = net
        .post_query(
            "SELECT COUNT(*) AS n FROM person",
            Some(&net.token("researcher")),
        )
        .await;
    assert_eq!(body["sites"]["north"]["status"], "answered", "{body}");
    assert_eq!(body["rows"][0][0], 4000);

    // North's own trail holds the refusal and the answer, correlated with the hub's request ids.
    let db = medfed_audit::Database::connect(
        net.dir
            .path()
            .join("sites/north/audit.db")
            .to_str()
            .unwrap(),
        1,
    )
    .await
    .unwrap();
    let records = medfed_audit::records(&db, 0, 1000).await.unwrap();
    assert!(
        records
            .iter()
            .any(|r| r.entry.decision == medfed_audit::Decision::Deny
                && r.entry.reason.contains("blocked")
                && r.entry.study.as_deref() == Some(&study))
    );
    assert!(
        records
            .iter()
            .any(|r| r.entry.decision == medfed_audit::Decision::Allow
                && r.entry.result_digest.is_some())
    );
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditors_read_and_verify_the_trail_which_nobody_can_change_through_the_api() {
    let net = network(1, 10_000).await;
    net.query_ok("SELECT COUNT(*) FROM person").await;
    let auditor = net.token("auditor");
    let (status, body) = net
        .call("GET", "/v1/audit?after=0&limit=500", None, Some(&auditor))
        .await;
    assert_eq!(status, 200, "{body}");
    let records = body["records"].as_array().unwrap();
    let query = records
        .iter()
        .find(|r| r["action"] == "query" && r["decision"] == "allow")
        .unwrap();
    assert_eq!(query["actor"], "rita");
    assert_eq!(query["result_digest"].as_str().unwrap().len(), 64);
    let (status, report) = net
        .call("GET", "/v1/audit/verify", None, Some(&auditor))
        .await;
    assert_eq!(status, 200);
    assert_eq!(report["first_break"], Value::Null, "{report}");
    assert_eq!(report["intact"], true, "{report}");
    for role in ["researcher", "admin", "custodian:north"] {
        let (status, _) = net
            .call("GET", "/v1/audit", None, Some(&net.token(role)))
            .await;
        assert_eq!(status, 403, "{role}");
    }
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let (status, _) = net
            .call(method, "/v1/audit", Some(json!({})), Some(&auditor))
            .await;
        assert_eq!(status, 405, "{method} /v1/audit");
    }
    net.net.shutdown().await;
}

#[test]
fn audit_verify_reports_the_first_tampered_entry() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("net");
    let d_str = d.to_str().unwrap();
    let o = crate::cli::medfed(&[
        "demo",
        "--once",
        "--dir",
        d_str,
        "--sites",
        "1",
        "--patients-per-site",
        "500",
    ]);
    assert!(o.status.success());
    let db = d.join("hub/audit.db");
    let key = d.join("pki/hub/signing.pub");
    let verify = || {
        crate::cli::medfed(&[
            "audit",
            "verify",
            "--db",
            db.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ])
    };
    assert!(verify().status.success());
    let export = crate::cli::medfed(&[
        "audit",
        "export",
        "--db",
        db.to_str().unwrap(),
        "--format",
        "jsonl",
    ]);
    let lines = String::from_utf8(export.stdout).unwrap();
    assert!(lines.lines().count() >= 5);
    assert!(
        lines
            .lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok())
    );

    // An insider edits entry 3 with sqlite, dropping the guard trigger first.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let db = medfed_audit::Database::connect(db.to_str().unwrap(), 1).await.unwrap();
        sqlx::raw_sql("DROP TRIGGER audit_log_no_update; UPDATE audit_log SET actor = 'nobody' WHERE seq = 3;")
            .execute(&db.pool)
            .await
            .unwrap();
    });
    let o = verify();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("BROKEN at entry 3") && err.contains("changed"),
        "{err}"
    );
}

/// OIDC: a hub fronted by a hospital's SSO accepts its RS256/ES256 tokens and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_jwts_are_checked_for_signature_issuer_audience_and_expiry() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let net = network(1, 10_000).await;
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt");
    // An EC key for ES256, made now; the RSA key is a committed test fixture.
    let ec = rcgen::KeyPair::generate().unwrap();
    let raw = ec.public_key_raw();
    let mut jwks: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures.join("rsa-test-jwks.json")).unwrap(),
    )
    .unwrap();
    jwks["keys"].as_array_mut().unwrap().push(json!({
        "kty": "EC", "crv": "P-256", "kid": "ec-test", "alg": "ES256", "use": "sig",
        "x": B64.encode(&raw[1..33]), "y": B64.encode(&raw[33..65]),
    }));
    let jwks_path = net.dir.path().join("jwks.json");
    std::fs::write(&jwks_path, jwks.to_string()).unwrap();

    let mut cfg = medfed_hub::HubConfig::load(&net.dir.path().join("hub/hub.toml")).unwrap();
    cfg.governance.audit_db = net
        .dir
        .path()
        .join("hub/audit-sso.db")
        .display()
        .to_string();
    cfg.oidc = Some(medfed_hub::auth::OidcConfig {
        issuer: "https://sso.example.org".into(),
        audience: "medfed-hub".into(),
        jwks: jwks_path.display().to_string(),
        roles_claim: "medfed_roles".into(),
        sites_claim: "medfed_sites".into(),
        portal_client_id: Some("medfed-portal".into()),
    });
    let hub = medfed_hub::Hub::new(&cfg).await.unwrap();

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = |exp: i64, aud: &str, iss: &str| {
        json!({
            "sub": "u-123", "preferred_username": "dr.jones", "iss": iss, "aud": aud, "exp": exp,
            "medfed_roles": ["custodian"], "medfed_sites": ["north"],
        })
    };
    let rsa = EncodingKey::from_rsa_pem(&std::fs::read(fixtures.join("rsa-test-key.pem")).unwrap())
        .unwrap();
    let es = EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).unwrap();
    let sign = |alg: Algorithm, kid: &str, key: &EncodingKey, c: &Value| {
        let mut h = Header::new(alg);
        h.kid = Some(kid.into());
        encode(&h, c, key).unwrap()
    };
    let auth = |t: String| {
        let hub = hub.clone();
        async move { hub.authenticate(Some(&format!("Bearer {t}")), "test").await }
    };
    let good = claims(now + 600, "medfed-hub", "https://sso.example.org");
    for (alg, kid, key) in [
        (Algorithm::RS256, "rsa-test", &rsa),
        (Algorithm::ES256, "ec-test", &es),
    ] {
        let who = auth(sign(alg, kid, key, &good)).await.unwrap();
        assert_eq!(
            (who.id.as_str(), who.roles.as_slice(), who.sites.as_slice()),
            (
                "dr.jones",
                &["custodian".to_string()][..],
                &["north".to_string()][..]
            )
        );
        assert_eq!(who.via, "jwt");
    }
    let bad = [
        (
            "expired",
            sign(
                Algorithm::RS256,
                "rsa-test",
                &rsa,
                &claims(now - 3600, "medfed-hub", "https://sso.example.org"),
            ),
        ),
        (
            "audience",
            sign(
                Algorithm::ES256,
                "ec-test",
                &es,
                &claims(now + 600, "other-app", "https://sso.example.org"),
            ),
        ),
        (
            "issuer",
            sign(
                Algorithm::ES256,
                "ec-test",
                &es,
                &claims(now + 600, "medfed-hub", "https://evil.example"),
            ),
        ),
        (
            "forged",
            sign(
                Algorithm::ES256,
                "ec-test",
                &EncodingKey::from_ec_pem(
                    rcgen::KeyPair::generate()
                        .unwrap()
                        .serialize_pem()
                        .as_bytes(),
                )
                .unwrap(),
                &good,
            ),
        ),
        (
            "hs256",
            sign(
                Algorithm::HS256,
                "rsa-test",
                &EncodingKey::from_secret(b"public"),
                &good,
            ),
        ),
    ];
    for (what, token) in bad {
        let err = auth(token).await.unwrap_err();
        assert!(
            matches!(err, medfed_hub::HubError::Unauthenticated(_)),
            "{what}: {err}"
        );
    }
    // Through the API: an expired SSO token is a 401 on a real route.
    let expired = sign(
        Algorithm::RS256,
        "rsa-test",
        &rsa,
        &claims(now - 3600, "medfed-hub", "https://sso.example.org"),
    );
    let (status, _) = crate::support::get_in_process(&hub, "/v1/studies", &expired).await;
    assert_eq!(status, 401);
    net.net.shutdown().await;
}
