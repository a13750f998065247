//! Feature tables a site derives from its own OMOP data, so that studies can model them
//! without row-level SQL leaving the site: each is computed once when the store opens (from
//! the OMOP tables as they are then) and registered as an ordinary table.
//!
//! `readmission`: one row per inpatient stay that ended at least 30 days before the record's
//! end, with the patient's age at admission, sex, inpatient admissions in the year before,
//! chronic conditions recorded by discharge, length of stay, the mean HbA1c of the year before
//! discharge (5.6 % where none was measured, with an indicator), the outcome
//! `readmitted_30d` (another inpatient stay starting within 30 days of discharge), and
//! `holdout` (1 for a fifth of the patients, chosen by their id: the same split at every
//! site, and a patient's stays never straddle it). No identifier is a column.

/// The readmission feature table's SQL (DataFusion dialect over OMOP CDM v5.4).
pub const READMISSION_SQL: &str = "
WITH stays AS (
  SELECT visit_occurrence_id AS sid, person_id AS pid, visit_start_date AS s, visit_end_date AS e
  FROM visit_occurrence
  WHERE visit_concept_id = 9201 AND visit_end_date <= DATE '2025-12-01'
), later AS (
  SELECT a.sid, MAX(CASE WHEN b.visit_occurrence_id IS NULL THEN 0 ELSE 1 END) AS readmitted
  FROM stays a LEFT JOIN visit_occurrence b
    ON b.person_id = a.pid AND b.visit_concept_id = 9201
   AND b.visit_start_date > a.e AND b.visit_start_date <= a.e + INTERVAL '30 days'
  GROUP BY a.sid
), earlier AS (
  SELECT a.sid, COUNT(b.visit_occurrence_id) AS prior_admissions
  FROM stays a LEFT JOIN visit_occurrence b
    ON b.person_id = a.pid AND b.visit_concept_id = 9201
   AND b.visit_start_date < a.s AND b.visit_start_date >= a.s - INTERVAL '365 days'
  GROUP BY a.sid
), conditions AS (
  SELECT a.sid,
    MAX(CASE WHEN c.condition_concept_id = 316139 THEN 1 ELSE 0 END) AS heart_failure,
    MAX(CASE WHEN c.condition_concept_id = 46271022 THEN 1 ELSE 0 END) AS ckd,
    MAX(CASE WHEN c.condition_concept_id = 255573 THEN 1 ELSE 0 END) AS copd,
    MAX(CASE WHEN c.condition_concept_id = 201826 THEN 1 ELSE 0 END) AS diabetes,
    MAX(CASE WHEN c.condition_concept_id = 4329847 THEN 1 ELSE 0 END) AS myocardial_infarction,
    MAX(CASE WHEN c.condition_concept_id = 255848 THEN 1 ELSE 0 END) AS pneumonia
  FROM stays a LEFT JOIN condition_occurrence c
    ON c.person_id = a.pid AND c.condition_start_date <= a.e
  GROUP BY a.sid
), labs AS (
  SELECT a.sid, AVG(m.value_as_number) AS hba1c
  FROM stays a LEFT JOIN measurement m
    ON m.person_id = a.pid AND m.measurement_concept_id = 3004410
   AND m.measurement_date <= a.e AND m.measurement_date >= a.e - INTERVAL '365 days'
  GROUP BY a.sid
)
SELECT
  CAST(date_part('year', a.s) AS BIGINT) - CAST(p.year_of_birth AS BIGINT) AS age,
  CAST(CASE WHEN p.gender_concept_id = 8507 THEN 1 ELSE 0 END AS BIGINT) AS male,
  CAST(r.prior_admissions AS BIGINT) AS prior_admissions,
  CAST(c.heart_failure AS BIGINT) AS heart_failure,
  CAST(c.ckd AS BIGINT) AS ckd,
  CAST(c.copd AS BIGINT) AS copd,
  CAST(c.diabetes AS BIGINT) AS diabetes,
  CAST(c.myocardial_infarction AS BIGINT) AS myocardial_infarction,
  CAST(c.pneumonia AS BIGINT) AS pneumonia,
  CAST(CAST(a.e AS INT) - CAST(a.s AS INT) AS BIGINT) AS length_of_stay,
  COALESCE(l.hba1c, 5.6) AS hba1c,
  CAST(CASE WHEN l.hba1c IS NULL THEN 0 ELSE 1 END AS BIGINT) AS hba1c_measured,
  CAST(n.readmitted AS BIGINT) AS readmitted_30d,
  CAST(CASE WHEN p.person_id % 5 = 0 THEN 1 ELSE 0 END AS BIGINT) AS holdout
FROM stays a
  JOIN person p ON p.person_id = a.pid
  JOIN later n ON n.sid = a.sid
  JOIN earlier r ON r.sid = a.sid
  JOIN conditions c ON c.sid = a.sid
  JOIN labs l ON l.sid = a.sid
";

/// Tables the readmission features need.
pub const READMISSION_NEEDS: [&str; 4] = [
    "person",
    "visit_occurrence",
    "condition_occurrence",
    "measurement",
];
