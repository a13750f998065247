//! OMOP standard concept ids the generator uses (from the OHDSI Athena vocabularies).
//!
//! Conditions are SNOMED-based standard concepts, labs and vitals LOINC-based, drugs RxNorm
//! ingredients, units UCUM. Ids are the published ones so that queries written against a real
//! OMOP database (e.g. `condition_concept_id = 201826` for type 2 diabetes) work unchanged here.

/// Gender: male.
pub const MALE: i32 = 8507;
/// Gender: female.
pub const FEMALE: i32 = 8532;

/// Race concepts with a label for `race_source_value`.
pub const RACES: [(i32, &str); 4] = [
    (8527, "white"),
    (8516, "black"),
    (8515, "asian"),
    (0, "unknown"),
];
/// Ethnicity: Hispanic or Latino.
pub const HISPANIC: i32 = 38003563;
/// Ethnicity: Not Hispanic or Latino.
pub const NOT_HISPANIC: i32 = 38003564;

/// Visit: inpatient visit.
pub const INPATIENT: i32 = 9201;
/// Visit: outpatient visit.
pub const OUTPATIENT: i32 = 9202;
/// Visit: emergency room visit.
pub const EMERGENCY: i32 = 9203;
/// Type concept: EHR (provenance of every generated record).
pub const TYPE_EHR: i32 = 32817;
/// Discharged to: home.
pub const DISCHARGED_HOME: i32 = 8536;

/// A chronic or acute condition the generator can give a patient.
#[derive(Debug, Clone, Copy)]
pub struct Condition {
    /// OMOP standard concept id (SNOMED).
    pub concept_id: i32,
    /// SNOMED CT code, written to `condition_source_value`.
    pub snomed: &'static str,
    /// Short name used in profiles and docs.
    pub name: &'static str,
}

/// The conditions, indexed by the `C_*` constants below.
pub const CONDITIONS: [Condition; 12] = [
    Condition {
        concept_id: 201826,
        snomed: "44054006",
        name: "type 2 diabetes",
    },
    Condition {
        concept_id: 320128,
        snomed: "59621000",
        name: "essential hypertension",
    },
    Condition {
        concept_id: 4329847,
        snomed: "22298006",
        name: "acute myocardial infarction",
    },
    Condition {
        concept_id: 316139,
        snomed: "84114007",
        name: "heart failure",
    },
    Condition {
        concept_id: 46271022,
        snomed: "709044004",
        name: "chronic kidney disease",
    },
    Condition {
        concept_id: 255573,
        snomed: "13645005",
        name: "COPD",
    },
    Condition {
        concept_id: 317009,
        snomed: "195967001",
        name: "asthma",
    },
    Condition {
        concept_id: 433736,
        snomed: "414916001",
        name: "obesity",
    },
    Condition {
        concept_id: 313217,
        snomed: "49436004",
        name: "atrial fibrillation",
    },
    Condition {
        concept_id: 432867,
        snomed: "55822004",
        name: "hyperlipidemia",
    },
    Condition {
        concept_id: 440383,
        snomed: "35489007",
        name: "depressive disorder",
    },
    Condition {
        concept_id: 255848,
        snomed: "233604007",
        name: "pneumonia",
    },
];
pub const C_T2D: usize = 0;
pub const C_HTN: usize = 1;
pub const C_AMI: usize = 2;
pub const C_HF: usize = 3;
pub const C_CKD: usize = 4;
pub const C_COPD: usize = 5;
pub const C_ASTHMA: usize = 6;
pub const C_OBESITY: usize = 7;
pub const C_AF: usize = 8;
pub const C_HLD: usize = 9;
pub const C_DEPRESSION: usize = 10;
pub const C_PNEUMONIA: usize = 11;

/// A drug ingredient (RxNorm) and its usual supply.
#[derive(Debug, Clone, Copy)]
pub struct Drug {
    /// OMOP standard concept id (RxNorm ingredient).
    pub concept_id: i32,
    /// RxNorm code, written to `drug_source_value`.
    pub rxnorm: &'static str,
    /// Ingredient name.
    pub name: &'static str,
}

/// The drugs, with the condition index that prompts each.
pub const DRUGS: [(usize, Drug); 12] = [
    (
        C_T2D,
        Drug {
            concept_id: 1503297,
            rxnorm: "6809",
            name: "metformin",
        },
    ),
    (
        C_T2D,
        Drug {
            concept_id: 1502905,
            rxnorm: "274783",
            name: "insulin glargine",
        },
    ),
    (
        C_HTN,
        Drug {
            concept_id: 1308216,
            rxnorm: "29046",
            name: "lisinopril",
        },
    ),
    (
        C_HTN,
        Drug {
            concept_id: 1332418,
            rxnorm: "17767",
            name: "amlodipine",
        },
    ),
    (
        C_HLD,
        Drug {
            concept_id: 1545958,
            rxnorm: "83367",
            name: "atorvastatin",
        },
    ),
    (
        C_AMI,
        Drug {
            concept_id: 1112807,
            rxnorm: "1191",
            name: "aspirin",
        },
    ),
    (
        C_AMI,
        Drug {
            concept_id: 1307046,
            rxnorm: "6918",
            name: "metoprolol",
        },
    ),
    (
        C_HF,
        Drug {
            concept_id: 956874,
            rxnorm: "4603",
            name: "furosemide",
        },
    ),
    (
        C_AF,
        Drug {
            concept_id: 1310149,
            rxnorm: "11289",
            name: "warfarin",
        },
    ),
    (
        C_COPD,
        Drug {
            concept_id: 1154343,
            rxnorm: "435",
            name: "albuterol",
        },
    ),
    (
        C_ASTHMA,
        Drug {
            concept_id: 1154343,
            rxnorm: "435",
            name: "albuterol",
        },
    ),
    (
        C_DEPRESSION,
        Drug {
            concept_id: 739138,
            rxnorm: "36437",
            name: "sertraline",
        },
    ),
];

/// A lab or vital sign (LOINC) with its UCUM unit concept.
#[derive(Debug, Clone, Copy)]
pub struct Lab {
    /// OMOP standard concept id (LOINC).
    pub concept_id: i32,
    /// LOINC code, written to `measurement_source_value`.
    pub loinc: &'static str,
    /// OMOP unit concept id (UCUM).
    pub unit_concept_id: i32,
    /// UCUM unit text, written to `unit_source_value`.
    pub unit: &'static str,
    /// Reference range (low, high).
    pub range: (f64, f64),
}

pub const HBA1C: Lab = Lab {
    concept_id: 3004410,
    loinc: "4548-4",
    unit_concept_id: 8554,
    unit: "%",
    range: (4.0, 5.6),
};
pub const GLUCOSE: Lab = Lab {
    concept_id: 3004501,
    loinc: "2345-7",
    unit_concept_id: 8840,
    unit: "mg/dL",
    range: (70.0, 99.0),
};
pub const BMI: Lab = Lab {
    concept_id: 3038553,
    loinc: "39156-5",
    unit_concept_id: 9531,
    unit: "kg/m2",
    range: (18.5, 24.9),
};
pub const SYSTOLIC_BP: Lab = Lab {
    concept_id: 3004249,
    loinc: "8480-6",
    unit_concept_id: 8876,
    unit: "mm[Hg]",
    range: (90.0, 120.0),
};
pub const DIASTOLIC_BP: Lab = Lab {
    concept_id: 3012888,
    loinc: "8462-4",
    unit_concept_id: 8876,
    unit: "mm[Hg]",
    range: (60.0, 80.0),
};
pub const HEART_RATE: Lab = Lab {
    concept_id: 3027018,
    loinc: "8867-4",
    unit_concept_id: 8541,
    unit: "/min",
    range: (60.0, 100.0),
};
