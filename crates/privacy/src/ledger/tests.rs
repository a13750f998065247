use super::*;

#[test]
fn a_refusal_prints_delta_as_a_number_a_person_reads() {
    let e = LedgerError::Exhausted {
        study: "s".into(),
        epsilon: 0.2,
        delta: 0.0,
        eps_left: 0.1,
        delta_left: 9.000000000000001e-7,
        eps_total: 0.5,
    };
    let text = e.to_string();
    assert!(text.contains("needs ε = 0.2 and δ = 0 but"), "{text}");
    assert!(
        text.contains("ε = 0.1000 and δ = 9e-7 of ε = 0.5"),
        "{text}"
    );
    assert!(!text.contains("0e0"), "{text}");
    assert_eq!(Delta(1e-7).to_string(), "1e-7");
    assert_eq!(Delta(2.5e-7).to_string(), "2.5e-7");
}

const T: Budget = Budget {
    epsilon: 0.5,
    delta: 1e-6,
};

async fn ledger(dir: &tempfile::TempDir) -> BudgetLedger {
    let path = dir.path().join("budget.db");
    BudgetLedger::open(path.to_str().unwrap()).await.unwrap()
}

#[tokio::test]
async fn spends_add_up_and_overspending_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let l = ledger(&dir).await;
    for i in 0..5 {
        l.charge("dp", T, &format!("q{i}"), 0.1, 1e-7)
            .await
            .unwrap();
    }
    let err = l.charge("dp", T, "q5", 0.1, 0.0).await.unwrap_err();
    assert!(matches!(err, LedgerError::Exhausted { .. }), "{err}");
    assert!(err.to_string().contains("exhausted"), "{err}");
    let b = l.balance("dp", T).await.unwrap();
    assert!(b.epsilon_remaining() < 1e-9);
    assert!((b.spent.delta - 5e-7).abs() < 1e-15);
    // Other studies have their own budget.
    l.charge("other", T, "q0", 0.5, 0.0).await.unwrap();
}

#[tokio::test]
async fn delta_is_a_budget_too() {
    let dir = tempfile::tempdir().unwrap();
    let l = ledger(&dir).await;
    l.charge("dp", T, "a", 0.01, 9e-7).await.unwrap();
    assert!(l.charge("dp", T, "b", 0.01, 2e-7).await.is_err());
    l.charge("dp", T, "c", 0.01, 1e-7).await.unwrap();
}

#[tokio::test]
async fn the_ledger_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let l = ledger(&dir).await;
        l.charge("dp", T, "q1", 0.45, 0.0).await.unwrap();
    }
    let l = ledger(&dir).await;
    let b = l.balance("dp", T).await.unwrap();
    assert!((b.spent.epsilon - 0.45).abs() < 1e-12);
    assert!(l.check("dp", T, 0.1, 0.0).await.is_err());
    assert!(l.charge("dp", T, "q2", 0.1, 0.0).await.is_err());
}

#[tokio::test]
async fn custodian_totals_and_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let l = ledger(&dir).await;
    l.set_total(
        "dp",
        Budget {
            epsilon: 1.0,
            delta: 1e-6,
        },
    )
    .await
    .unwrap();
    l.charge("dp", T, "q1", 0.8, 0.0).await.unwrap();
    assert!(matches!(
        l.charge("dp", T, "q1", 0.1, 0.0).await,
        Err(LedgerError::Duplicate(_))
    ));
    // The duplicate did not spend.
    assert!((l.balance("dp", T).await.unwrap().spent.epsilon - 0.8).abs() < 1e-12);
    assert!(l.charge("dp", T, "q2", -0.1, 0.0).await.is_err());
}

#[tokio::test]
async fn concurrent_charges_cannot_overspend() {
    let dir = tempfile::tempdir().unwrap();
    let l = ledger(&dir).await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let l = l.clone();
            tokio::spawn(async move { l.charge("dp", T, &format!("q{i}"), 0.05, 0.0).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 10, "0.5 / 0.05 charges fit");
}

#[tokio::test]
async fn a_run_is_charged_once_and_counts_its_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let l = ledger(&dir).await;
    let run = RunTerms {
        id: "r1".into(),
        rounds: 3,
        epsilon: 0.4,
        delta: 1e-7,
    };
    assert!(!l.run_charged("dp", "r1").await.unwrap());
    for expected in 1..=3 {
        assert_eq!(l.charge_round("dp", T, &run).await.unwrap(), expected);
    }
    let b = l.balance("dp", T).await.unwrap();
    assert!((b.spent.epsilon - 0.4).abs() < 1e-12, "charged once: {b:?}");
    assert!(l.run_charged("dp", "r1").await.unwrap());
    let err = l.charge_round("dp", T, &run).await.unwrap_err();
    assert!(
        matches!(err, LedgerError::RunSpent { rounds: 3, .. }),
        "{err}"
    );
    // The same run with cheaper terms is refused, not re-priced.
    let cheaper = RunTerms {
        rounds: 100,
        ..run.clone()
    };
    assert!(matches!(
        l.charge_round("dp", T, &cheaper).await,
        Err(LedgerError::RunChanged(_))
    ));
    // A second run cannot overspend: 0.4 + 0.4 > 0.5, and the refusal leaves no trace.
    let second = RunTerms {
        id: "r2".into(),
        ..run.clone()
    };
    let err = l.charge_round("dp", T, &second).await.unwrap_err();
    assert!(matches!(err, LedgerError::Exhausted { .. }), "{err}");
    assert!(!l.run_charged("dp", "r2").await.unwrap());
    // Rounds survive a restart.
    drop(l);
    let l = ledger(&dir).await;
    assert!(l.charge_round("dp", T, &run).await.is_err());
}
