use super::*;
use arrow::array::StringArray;

/// Groups a..d: contributors 50, 3, 0, 40; sums with |x| totals and top-2 contributions.
fn table() -> (RecordBatch, Vec<ColumnRole>) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k0", DataType::Utf8, true),
        Field::new("p0", DataType::Int64, true),
        Field::new("p1", DataType::Float64, true),
        Field::new("__n", DataType::Int64, false),
        Field::new("__t1", DataType::Float64, true),
        Field::new("__top1", DataType::Float64, true),
        Field::new("__first1", DataType::Float64, true),
        Field::new("__shn1", DataType::Int64, true),
        Field::new("__sh1_1", DataType::Int64, true),
        Field::new("__sh2_1", DataType::Int64, true),
    ]));
    // Group e: 30 people who all have 7, so the mean tells each their value.
    let e = crate::shared::encode(7.0);
    let (s1, s2) = (
        (30 * u128::from(e) % u128::from(crate::shared::P)) as i64,
        (30 * u128::from(crate::shared::square(e)) % u128::from(crate::shared::P)) as i64,
    );
    let (f0, f1) = (crate::shared::encode(10.0), crate::shared::encode(11.0));
    let varied = |n: i64| {
        let half = (n / 2) as u64;
        let s = |a: u64, b: u64| crate::shared::add(a.wrapping_mul(half), b.wrapping_mul(half));
        (
            s(f0, f1) as i64,
            s(crate::shared::square(f0), crate::shared::square(f1)) as i64,
        )
    };
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["a", "b", "c", "d", "e"])),
            Arc::new(Int64Array::from(vec![50, 3, 0, 40, 30])),
            Arc::new(Float64Array::from(vec![500.0, 30.0, 0.0, 1000.0, 210.0])),
            Arc::new(Int64Array::from(vec![50, 3, 0, 40, 30])),
            Arc::new(Float64Array::from(vec![500.0, 30.0, 0.0, 1000.0, 210.0])),
            Arc::new(Float64Array::from(vec![25.0, 20.0, 0.0, 950.0, 14.0])),
            Arc::new(Float64Array::from(vec![13.0, 10.0, 0.0, 900.0, 7.0])),
            Arc::new(Int64Array::from(vec![50, 2, 0, 40, 30])),
            Arc::new(Int64Array::from(vec![
                varied(50).0,
                varied(2).0,
                0,
                varied(40).0,
                s1,
            ])),
            Arc::new(Int64Array::from(vec![
                varied(50).1,
                varied(2).1,
                0,
                varied(40).1,
                s2,
            ])),
        ],
    )
    .unwrap();
    let roles = vec![
        ColumnRole::Key,
        ColumnRole::Count,
        ColumnRole::Sum { range: None },
        ColumnRole::Contributors,
        ColumnRole::DominanceTotal(2),
        ColumnRole::DominanceTop(2),
        ColumnRole::DominanceFirst(2),
        ColumnRole::SharedCount(2),
        ColumnRole::SharedSum(2),
        ColumnRole::SharedSquares(2),
    ];
    (batch, roles)
}

fn status(b: &RecordBatch) -> Vec<u8> {
    b.column_by_name(CELL_STATUS)
        .unwrap()
        .as_primitive::<arrow::datatypes::UInt8Type>()
        .values()
        .to_vec()
}

#[test]
fn exact_mode_suppresses_small_and_dominated_cells_and_drops_dominance_inputs() {
    let (batch, roles) = table();
    let (out, report) = protect(
        &batch,
        &roles,
        &Protection::default(),
        &DisclosureRules::default(),
    )
    .unwrap();
    let names: Vec<_> = out
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["k0", "p0", "p1", CONTRIBUTORS, CELL_STATUS]);
    // a released; b small (3 < 10); c zero people is released as 0; d dominated (950/1000);
    // e's 30 people all have one value.
    assert_eq!(status(&out), [0, 1, 0, 2, 5]);
    let counts = out.column(1).as_primitive::<Int64Type>();
    assert_eq!(counts.value(0), 50);
    assert!(counts.is_null(1), "suppressed, not 0");
    assert_eq!(counts.value(2), 0);
    assert!(counts.is_null(3));
    assert!(out.column(3).is_null(1));
    assert_eq!(report.suppressed.values().sum::<usize>(), 3);
    let off = DisclosureRules {
        class_disclosure: false,
        ..Default::default()
    };
    let network = Protection {
        rules: off,
        ..Default::default()
    };
    let (out, _) = protect(&batch, &roles, &network, &off).unwrap();
    assert_eq!(status(&out)[4], 0, "class disclosure switched off");
    // A model's internal sums (a GLM's Σw at β = 0 is the same for every row) are not judged.
    let model = Protection {
        model_step: true,
        ..Default::default()
    };
    let (out, _) = protect(&batch, &roles, &model, &DisclosureRules::default()).unwrap();
    assert_eq!(status(&out), [0, 1, 0, 2, 0]);
    assert_eq!(report.epsilon, 0.0);
}

#[test]
fn the_p_percent_rule_alone_withholds_what_the_second_largest_could_estimate() {
    let (batch, roles) = table();
    let p = |p_percent| DisclosureRules {
        min_cell_count: 1,
        dominance: crate::Dominance {
            n: 2,
            share: 1.0,
            p_percent,
        },
        models: Default::default(),
        rounding: Default::default(),
        class_disclosure: true,
        review: Default::default(),
    };
    let run = |site: DisclosureRules| {
        let network = Protection {
            rules: p(0.0),
            ..Default::default()
        };
        status(&protect(&batch, &roles, &network, &site).unwrap().0)
    };
    // d: 1000 = 900 + 50 + 50 more; the rest (50) is under 10% of the largest (90).
    assert_eq!(run(p(10.0)), [0, 0, 0, 2, 5]);
    assert_eq!(run(p(0.0)), [0, 0, 0, 0, 5], "both rules off");
}

#[test]
fn under_secure_aggregation_dominance_inputs_leave_masked_for_the_network_to_judge() {
    let (batch, roles) = table();
    let secure = Protection {
        secure_aggregation: true,
        ..Default::default()
    };
    let (out, _) = protect(&batch, &roles, &secure, &DisclosureRules::default()).unwrap();
    let names: Vec<String> = out
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let tail: Vec<&str> = names[names.len() - 6..]
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            "__first:p1",
            "__top:p1",
            "__abs:p1",
            "__shn:p1",
            "__sh1:p1",
            "__sh2:p1"
        ]
    );
    // Nothing is judged at the site: small, dominated and one-valued groups travel, summed.
    assert_eq!(status(&out), [0, 0, 0, 0, 0]);
    let expected: Vec<String> = hidden_fields(["p1"])
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(tail, expected);
}

#[test]
fn a_site_is_at_least_as_strict_as_the_network() {
    let (batch, roles) = table();
    let lax = Protection {
        rules: DisclosureRules {
            min_cell_count: 3,
            ..Default::default()
        },
        dp: None,
        secure_aggregation: false,
        model_step: false,
    };
    let (out, _) = protect(&batch, &roles, &lax, &DisclosureRules::default()).unwrap();
    assert_eq!(
        status(&out)[1],
        1,
        "the site's k = 10 wins over the hub's 3"
    );
    let strict_site = DisclosureRules {
        min_cell_count: 45,
        ..Default::default()
    };
    let (out, report) = protect(&batch, &roles, &lax, &strict_site).unwrap();
    assert_eq!(status(&out), [0, 1, 0, 1, 1]);
    assert_eq!(report.rules.min_cell_count, 45);
}

#[test]
fn dp_mode_noises_every_statistic_and_drops_groups_below_the_threshold() {
    let (batch, mut roles) = table();
    // Under DP the sum was clamped to [0, 200].
    roles[2] = ColumnRole::Sum {
        range: Some((0.0, 200.0)),
    };
    let batch = batch.project(&[0, 1, 2, 3]).unwrap();
    roles.truncate(4);
    let dp = DpRelease {
        epsilon: 1.0,
        delta: 1e-6,
        ..Default::default()
    };
    let p = Protection {
        dp: Some(dp),
        ..Default::default()
    };
    let (out, report) = protect(&batch, &roles, &p, &DisclosureRules::default()).unwrap();
    // ε split over p0, p1 and __n: scale 3 for counts; the bare sum is one Laplace of scale
    // 3 · max(|0|, |200|) = 600 (no hidden count, no centring).
    assert_eq!(report.scales["p0"], 3.0);
    assert!((report.scales["p1"] - 600.0).abs() < 1e-9);
    assert_eq!(report.scales[CONTRIBUTORS], 3.0);
    assert_eq!(report.distributions[CONTRIBUTORS], "discrete Laplace");
    let tau = report.threshold.unwrap();
    assert_eq!(tau, crate::dp::partition_threshold(3.0, 1, 1e-6));
    assert!(crate::dp::discrete_laplace_tail(3.0, tau as i64 - 1) <= 1e-6);
    assert_eq!(report.epsilon, 1.0);
    assert_eq!(report.delta, 1e-6);
    // b (3 people) and c (0) essentially never pass τ; a (50), d (40) and e (30) may.
    let keys = out.column(0).as_string::<i32>();
    for k in keys.iter().flatten() {
        assert!(["a", "d", "e"].contains(&k), "released group {k}");
    }
    assert!(
        out.schema().column_with_name("__t1").is_none(),
        "hidden count leaked"
    );
}

#[test]
fn dp_refuses_unbounded_sums() {
    let (batch, mut roles) = table();
    roles[2] = ColumnRole::Sum { range: None };
    let p = Protection {
        dp: Some(DpRelease::default()),
        ..Default::default()
    };
    let err = protect(&batch, &roles, &p, &DisclosureRules::default()).unwrap_err();
    assert!(err.to_string().contains("bounds"), "{err}");
}
