//! The documented example is sdcTable's `microdata1` (region × gender counts, one primary
//! cell); only its published counts are used here.

use super::*;

const K: i64 = 10;

fn dims(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn key(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

type Rows = Vec<(Vec<String>, i64)>;

/// The table as the hub holds it: small cells hidden, or under secure aggregation absent.
fn table(rows: &Rows, gaps: bool) -> Table {
    let cells = rows
        .iter()
        .filter(|r| !gaps || r.1 >= K)
        .map(|(key, n)| (key.clone(), (*n >= K).then_some(*n)))
        .collect();
    Table {
        dims: dims(&["region", "gender"]),
        cells,
        gaps,
    }
}

fn rows(list: &[(&str, &str, i64)]) -> Rows {
    list.iter().map(|&(r, g, n)| (key(&[r, g]), n)).collect()
}

fn withheld(t: &Table, earlier: &[Earlier]) -> Vec<String> {
    let mut out: Vec<String> = protect(t, earlier, K)
        .unwrap()
        .into_iter()
        .map(|i| t.cells[i].0.join("/"))
        .collect();
    out.sort();
    out
}

fn all_margins(rows: &Rows) -> Vec<Earlier> {
    vec![
        Earlier::margin(rows, &["region"], &[0], K),
        Earlier::margin(rows, &["gender"], &[1], K),
        Earlier::margin(rows, &[], &[], K),
    ]
}

#[test]
fn sdctable_microdata1_takes_the_cheapest_rectangle() {
    // sdcTable protects (A, female) with (A, male), (C, female), (C, male): the box through
    // region C costs 40 people, through D 43, through B 51.
    let rows = microdata1();
    let expected = ["A/male", "C/female", "C/male"];
    assert_eq!(
        withheld(&table(&rows, false), &all_margins(&rows)),
        expected
    );
    // Under secure aggregation the hub does not know (A, female) was withheld; the margins
    // pin it to the only unseen cell of its lines, and the same box protects it.
    assert_eq!(withheld(&table(&rows, true), &all_margins(&rows)), expected);
}

#[test]
fn the_protected_cell_moves_by_at_least_k_within_its_box() {
    // Every value of (A, female) the published numbers allow, by brute force: the hidden
    // cells of regions A and C must fill their region, gender and grand totals.
    let feasible: Vec<i64> = (0..=100)
        .filter(|&af| {
            let (am, cf) = (20 - af, 12 - af); // region A total, women hidden in A and C
            let cm = 22 - cf; // region C total
            am >= 0 && cf >= 0 && cm >= 0 && am + cm == 30 // men hidden in A and C
        })
        .collect();
    let width = feasible.last().unwrap() - feasible.first().unwrap();
    assert!(width >= K, "(A, female) pinned to {feasible:?}");
    // After protection no hidden cell is determined and every line hides 0 or ≥ k people:
    // protecting the protected table withholds nothing more.
    let rows = microdata1();
    let t = table(&rows, false);
    let margins = all_margins(&rows);
    let hide = protect(&t, &margins, K).unwrap();
    let mut t2 = t.clone();
    for i in hide {
        t2.cells[i].1 = None;
    }
    assert!(protect(&t2, &margins, K).unwrap().is_empty());
}

#[test]
fn only_the_margins_released_are_protected_against() {
    let rows = microdata1();
    // Only the count per gender: the women's line needs one more hidden woman, the cheapest.
    let by_gender = [Earlier::margin(&rows, &["gender"], &[1], K)];
    assert_eq!(withheld(&table(&rows, false), &by_gender), ["C/female"]);
    // Only per region: (A, male) is the only other cell of region A.
    let by_region = [Earlier::margin(&rows, &["region"], &[0], K)];
    assert_eq!(withheld(&table(&rows, false), &by_region), ["A/male"]);
    // Nothing released before: nothing to derive from.
    assert!(withheld(&table(&rows, false), &[]).is_empty());
}

#[test]
fn a_margin_released_after_its_finer_table_is_withheld_where_it_would_reveal() {
    // region × gender released first, (A, female) hidden; the count per gender now would give
    // women − the released women = 2: the women's total is withheld, the men's released.
    let rows = microdata1();
    let finer = Earlier {
        dims: dims(&["region", "gender"]),
        cells: rows.iter().filter(|r| r.1 >= K).cloned().collect(),
    };
    let by_gender = Table {
        dims: dims(&["gender"]),
        cells: vec![(key(&["female"]), Some(45)), (key(&["male"]), Some(55))],
        gaps: false,
    };
    assert_eq!(withheld(&by_gender, &[finer]), ["female"]);
}

#[test]
fn a_line_hiding_fewer_than_k_people_takes_a_complement_even_unseen() {
    // Secure aggregation: the women of region E were withheld and E never appears anywhere,
    // so the hub cannot place them; the women's line still hides only 3 people.
    let rows = rows(&[
        ("A", "female", 20),
        ("A", "male", 18),
        ("B", "female", 12),
        ("B", "male", 30),
    ]);
    let t = table(&rows, true);
    let by_gender = [Earlier {
        dims: dims(&["gender"]),
        cells: vec![(key(&["female"]), 35), (key(&["male"]), 48)],
    }];
    assert_eq!(withheld(&t, &by_gender), ["B/female"]);
}

#[test]
fn a_margin_that_is_not_a_sum_of_the_table_constrains_nothing() {
    // The women's line already holds more released people than its margin (data changed, or a
    // person counted in several groups): the margin is ignored rather than trusted.
    let rows = microdata1();
    let stale = [Earlier {
        dims: dims(&["gender"]),
        cells: vec![(key(&["female"]), 40), (key(&["male"]), 55)],
    }];
    assert!(withheld(&table(&rows, false), &stale).is_empty());
}

#[test]
fn an_earlier_small_margin_under_looser_rules_cannot_be_protected() {
    // The count per gender was released when k was 5 (8 women); with k = 10 the women's
    // hidden total of 8 cannot be widened by this table, whose women are all hidden.
    let t = Table {
        dims: dims(&["region", "gender"]),
        cells: vec![
            (key(&["A", "female"]), None),
            (key(&["B", "female"]), None),
            (key(&["A", "male"]), Some(20)),
        ],
        gaps: false,
    };
    let by_gender = [Earlier {
        dims: dims(&["gender"]),
        cells: vec![(key(&["female"]), 8)],
    }];
    assert_eq!(protect(&t, &by_gender, K), Err(Unprotectable));
}

#[test]
fn the_choice_does_not_depend_on_row_order() {
    let rows = microdata1();
    let mut reversed = rows.clone();
    reversed.reverse();
    let a = withheld(&table(&rows, false), &all_margins(&rows));
    let b = withheld(&table(&reversed, false), &all_margins(&reversed));
    assert_eq!(a, b);
}
