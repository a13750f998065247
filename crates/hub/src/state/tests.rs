//! State on both backends; PostgreSQL ones run when `MEDFED_TEST_PG` is set.

use medfed_audit::db::{Backend, isolated_postgres};
use medfed_core::study::{ApprovalState, StudyTerms};

use super::users::{parse_token, secret_matches};
use super::*;

async fn state(backend: Backend, tag: &str) -> Option<(HubState, Option<tempfile::TempDir>)> {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.db");
            Some((
                HubState::open(path.to_str().unwrap()).await.unwrap(),
                Some(dir),
            ))
        }
        Backend::Postgres => {
            let Ok(url) = std::env::var("MEDFED_TEST_PG") else {
                eprintln!("skipped: MEDFED_TEST_PG is not set");
                return None;
            };
            let schema = format!("hubstate_{tag}_{}", std::process::id());
            let url = isolated_postgres(&url, &schema).await.unwrap();
            Some((HubState::open(&url).await.unwrap(), None))
        }
    }
}

fn new_study(sites: &[&str]) -> NewStudy {
    NewStudy {
        title: "T2D outcomes".into(),
        purpose: "HbA1c control by age band".into(),
        sites: sites.iter().map(|s| s.to_string()).collect(),
        members: vec!["carl".into()],
        terms: StudyTerms::exact_sql(&["person"]),
    }
}

async fn users_tokens_and_studies(backend: Backend) {
    let Some((st, _d)) = state(backend, "flow").await else {
        return;
    };
    let roles = |r: &str| vec![r.to_string()];
    st.add_user("rita", &roles("researcher"), &[])
        .await
        .unwrap();
    st.add_user("nora", &roles("custodian"), &["north".into()])
        .await
        .unwrap();
    assert!(
        st.add_user("rita", &roles("researcher"), &[])
            .await
            .is_err()
    );
    assert!(st.add_user("x", &roles("wizard"), &[]).await.is_err());
    assert!(st.add_user("y", &roles("custodian"), &[]).await.is_err());

    let t = st.issue_token("rita").await.unwrap();
    let (id, secret) = parse_token(&t.token).unwrap();
    let (user, hash) = st.live_token(id).await.unwrap().unwrap();
    assert_eq!(user.name, "rita");
    assert!(hash.starts_with("$argon2id$"), "only the hash is stored");
    assert!(secret_matches(secret, &hash));
    assert!(!secret_matches(&"0".repeat(64), &hash));
    st.revoke_token(id).await.unwrap();
    assert!(st.live_token(id).await.unwrap().is_none());
    assert!(st.revoke_token(id).await.is_err());

    let net = ["north".to_string(), "south".to_string()];
    assert!(
        st.propose("rita", &new_study(&["mars"]), &net)
            .await
            .is_err()
    );
    let s = st
        .propose("rita", &new_study(&["north", "south"]), &net)
        .await
        .unwrap();
    assert_eq!(s.sites["north"].state, ApprovalState::Pending);
    assert!(s.approved_sites().is_empty());
    let s = st
        .decide(&s.id, "north", "nora", ApprovalState::Approved, Some("ok"))
        .await
        .unwrap();
    assert_eq!(s.approved_sites(), ["north"]);
    assert_eq!(s.sites["north"].decided_by.as_deref(), Some("nora"));
    assert_eq!(st.studies().await.unwrap().len(), 1);
    assert_eq!(
        st.site_decisions("south").await.unwrap(),
        [(s.id.clone(), "pending".into())]
    );
}

#[tokio::test]
async fn sqlite_users_tokens_and_studies() {
    users_tokens_and_studies(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_users_tokens_and_studies() {
    users_tokens_and_studies(Backend::Postgres).await;
}

#[tokio::test]
async fn postgres_row_level_security_hides_other_sites_rows() {
    let Some((st, _)) = state(Backend::Postgres, "rls").await else {
        return;
    };
    let net: Vec<String> = ["north", "south", "east"].map(String::from).to_vec();
    let a = st
        .propose("rita", &new_study(&["north", "south"]), &net)
        .await
        .unwrap();
    let b = st
        .propose("rita", &new_study(&["south", "east"]), &net)
        .await
        .unwrap();

    // A custodian-scoped connection sees only its own site's rows...
    let north = st.site_decisions("north").await.unwrap();
    assert_eq!(north, [(a.id.clone(), "pending".to_string())]);
    assert_eq!(st.site_decisions("south").await.unwrap().len(), 2);

    // ...even with no WHERE clause at all, and cannot change another site's rows.
    let pool = &st.database().pool;
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE medfed_custodian")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("SELECT set_config('medfed.site', 'east', true)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let sites: Vec<String> = sqlx::query_scalar("SELECT site FROM study_sites")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(sites, ["east"]);
    let changed = sqlx::query("UPDATE study_sites SET state = 'approved' WHERE site = 'north'")
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(
        changed.rows_affected(),
        0,
        "RLS must hide north's rows from east"
    );
    tx.rollback().await.unwrap();

    // Through the hub's own API, a decision for a site outside the scope finds no row.
    let err = st
        .decide(&b.id, "north", "nora", ApprovalState::Approved, None)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("does not ask for site north"),
        "{err}"
    );
}

async fn model_versions_number_themselves(backend: Backend) {
    let Some((st, _dir)) = state(backend, "models").await else {
        return;
    };
    let version = |formula: &str| ModelVersion {
        model: "readmission".into(),
        version: 0,
        kind: "glm/binomial".into(),
        study: "s1".into(),
        trained_by: "rita".into(),
        parameters: serde_json::json!({"formula": formula}),
        metrics: serde_json::json!({"n": 1200, "aic": 1432.5}),
        artifact: serde_json::json!({"coefficients": {"(Intercept)": {"estimate": -0.25}}}),
        epsilon: 0.0,
        sites: vec!["north".into(), "south".into()],
        audit_digest: "ab12".into(),
        created_us: 0,
    };
    assert_eq!(st.register_version(&version("y ~ a")).await.unwrap(), 1);
    assert_eq!(st.register_version(&version("y ~ a + b")).await.unwrap(), 2);
    let all = st.model_versions(Some("readmission")).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].version, 2);
    assert_eq!(all[1].parameters["formula"], "y ~ a + b");
    assert_eq!(all[1].sites, ["north", "south"]);
    assert!(all[1].created_us > 0);
    assert!(st.model_versions(Some("other")).await.unwrap().is_empty());
    assert_eq!(st.model_versions(None).await.unwrap().len(), 2);
}

#[tokio::test]
async fn sqlite_model_versions_number_themselves() {
    model_versions_number_themselves(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_model_versions_number_themselves() {
    model_versions_number_themselves(Backend::Postgres).await;
}

async fn a_large_table_is_recorded_whole(backend: Backend) {
    let Some((st, _dir)) = state(backend, "cells").await else {
        return;
    };
    // More cells than one INSERT carries: the record spans statements in one transaction.
    let cells: Vec<(String, i64)> = (0..2_345).map(|i| (i.to_string(), 10 + i)).collect();
    let dims = vec!["year".to_string()];
    st.record_cells(&ReleasedTable {
        study: "s1",
        request_id: "q-1",
        grouping: "year",
        dims: &dims,
        cohort: "c1",
        cells: &cells,
    })
    .await
    .unwrap();
    let earlier = st.cohort_releases("s1", "c1").await.unwrap();
    assert_eq!(earlier.len(), 1);
    assert_eq!(earlier[0].dims, dims);
    let mut got = earlier[0].cells.clone();
    got.sort_by_key(|c| c.1);
    let want: Vec<(Vec<String>, i64)> = cells.iter().map(|(k, n)| (vec![k.clone()], *n)).collect();
    assert_eq!(got, want);
    assert!(st.cohort_releases("s1", "other").await.unwrap().is_empty());
}

#[tokio::test]
async fn sqlite_a_large_table_is_recorded_whole() {
    a_large_table_is_recorded_whole(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_a_large_table_is_recorded_whole() {
    a_large_table_is_recorded_whole(Backend::Postgres).await;
}
