//! The OMOP Common Data Model v5.4 as Arrow schemas.
//!
//! The tables are parsed once from OHDSI's own PostgreSQL DDL (shipped in `omop/`), so the column
//! names, order, nullability and types medfed writes and reads are the published ones, not a copy
//! that could drift. Type mapping: `integer` → Int32, `bigint` → Int64, `varchar`/`TEXT` → Utf8,
//! `date` → Date32, `TIMESTAMP` → Timestamp(µs), `NUMERIC` → Float64 (the DDL gives no precision,
//! and lab values are measurements, not money).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::IDENTIFIER_METADATA_KEY;

const DDL: &str = include_str!("../omop/OMOPCDM_postgresql_5.4_ddl.sql");
const PRIMARY_KEYS: &str = include_str!("../omop/OMOPCDM_postgresql_5.4_primary_keys.sql");

/// One OMOP CDM table.
#[derive(Debug, Clone)]
pub struct TableDef {
    /// Table name, lowercase, e.g. `condition_occurrence`.
    pub name: String,
    /// Columns in DDL order.
    pub columns: Vec<ColumnDef>,
    /// The primary-key column, where the CDM declares one.
    pub primary_key: Option<String>,
}

/// One column of an OMOP CDM table.
#[derive(Debug, Clone)]
pub struct ColumnDef {
    /// Column name, lowercase.
    pub name: String,
    /// Arrow type after the mapping in the module docs.
    pub data_type: DataType,
    /// False for `NOT NULL` columns.
    pub nullable: bool,
}

impl TableDef {
    /// The table as an Arrow schema; identifier columns carry [`IDENTIFIER_METADATA_KEY`].
    pub fn arrow_schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| {
                let f = Field::new(&c.name, c.data_type.clone(), c.nullable);
                if is_identifier(&c.name) {
                    f.with_metadata(identifier_metadata())
                } else {
                    f
                }
            })
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// Index of a column by name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// A batch with the table's full CDM schema from the given columns (nulls elsewhere). Every
    /// writer of OMOP tables (the generator, ingestion) builds its batches here, so a column
    /// name that is not in the CDM fails loudly rather than being written somewhere else.
    ///
    /// # Panics
    /// When a column is not a column of this table: that is a bug in the writer, not bad data.
    pub fn batch(
        &self,
        rows: usize,
        columns: Vec<(&str, arrow::array::ArrayRef)>,
    ) -> Result<arrow::array::RecordBatch, arrow::error::ArrowError> {
        let schema = self.arrow_schema();
        let mut arrays: Vec<Option<arrow::array::ArrayRef>> = vec![None; self.columns.len()];
        for (name, array) in columns {
            let i = self
                .column_index(name)
                .unwrap_or_else(|| panic!("{}.{name} is not a CDM column", self.name));
            arrays[i] = Some(array);
        }
        let arrays = arrays
            .into_iter()
            .zip(schema.fields())
            .map(|(a, f)| a.unwrap_or_else(|| arrow::array::new_null_array(f.data_type(), rows)))
            .collect();
        arrow::array::RecordBatch::try_new(schema, arrays)
    }

    /// True when the table holds one row per clinical fact about a person (it has `person_id`).
    pub fn is_clinical(&self) -> bool {
        self.column_index("person_id").is_some()
    }
}

/// Field metadata marking an identifier column.
pub fn identifier_metadata() -> HashMap<String, String> {
    HashMap::from([(IDENTIFIER_METADATA_KEY.to_string(), "true".to_string())])
}

struct Cdm {
    tables: Vec<TableDef>,
    identifiers: BTreeSet<String>,
}

static CDM: LazyLock<Cdm> = LazyLock::new(|| {
    let keys = parse_primary_keys(PRIMARY_KEYS);
    let tables: Vec<TableDef> = parse_ddl(DDL)
        .into_iter()
        .map(|mut t| {
            t.primary_key = keys.get(&t.name).cloned();
            t
        })
        .collect();
    // Identifiers: person_id and the primary key of every clinical table. A column that *ends*
    // with one of those names (preceding_visit_occurrence_id, parent_visit_detail_id) points at a
    // single event too. Vocabulary and health-system keys (concept_id, care_site_id) do not.
    let mut identifiers: BTreeSet<String> = tables
        .iter()
        .filter(|t| t.is_clinical())
        .filter_map(|t| t.primary_key.clone())
        .collect();
    identifiers.insert("person_id".into());
    identifiers.insert("person_source_value".into());
    let roots: Vec<String> = identifiers.iter().cloned().collect();
    for t in &tables {
        for c in &t.columns {
            if roots.iter().any(|r| c.name.ends_with(&format!("_{r}"))) {
                identifiers.insert(c.name.clone());
            }
        }
    }
    Cdm {
        tables,
        identifiers,
    }
});

/// All 39 OMOP CDM v5.4 tables, in DDL order.
pub fn tables() -> &'static [TableDef] {
    &CDM.tables
}

/// One table by (lowercase) name.
pub fn table(name: &str) -> Option<&'static TableDef> {
    CDM.tables.iter().find(|t| t.name == name)
}

/// True for columns that identify a person or a single clinical event. Such columns may appear
/// only inside `COUNT(...)`/`COUNT(DISTINCT ...)`: never as a group key or a released value.
pub fn is_identifier(column: &str) -> bool {
    CDM.identifiers.contains(column)
}

fn map_type(sql_type: &str) -> DataType {
    let base = sql_type
        .split('(')
        .next()
        .unwrap_or(sql_type)
        .to_ascii_lowercase();
    match base.as_str() {
        "integer" | "int" => DataType::Int32,
        "bigint" => DataType::Int64,
        "date" => DataType::Date32,
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "numeric" | "float" | "double" => DataType::Float64,
        _ => DataType::Utf8,
    }
}

fn parse_ddl(ddl: &str) -> Vec<TableDef> {
    let mut tables = Vec::new();
    for block in ddl.split("CREATE TABLE").skip(1) {
        let Some((head, body)) = block.split_once('(') else {
            continue;
        };
        let name = head.trim().rsplit('.').next().unwrap_or("").to_lowercase();
        let body = body.split(");").next().unwrap_or(body);
        let columns = body
            .lines()
            .filter_map(|line| {
                let line = line.trim().trim_end_matches(',');
                let mut words = line.split_whitespace();
                let col = words.next()?;
                let ty = words.next()?;
                Some(ColumnDef {
                    name: col.to_lowercase(),
                    data_type: map_type(ty),
                    nullable: !line.contains("NOT NULL"),
                })
            })
            .collect();
        tables.push(TableDef {
            name,
            columns,
            primary_key: None,
        });
    }
    tables
}

fn parse_primary_keys(sql: &str) -> HashMap<String, String> {
    sql.lines()
        .filter_map(|line| {
            let rest = line.split("ALTER TABLE").nth(1)?;
            let table = rest.split_whitespace().next()?.rsplit('.').next()?;
            let key = line.split("PRIMARY KEY (").nth(1)?.split(')').next()?;
            Some((table.to_lowercase(), key.trim().to_lowercase()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_table_of_the_cdm() {
        assert_eq!(tables().len(), 39);
        let person = table("person").unwrap();
        assert_eq!(person.columns.len(), 18);
        assert_eq!(person.columns[0].name, "person_id");
        assert!(!person.columns[0].nullable);
        assert_eq!(
            person.columns[5].data_type,
            DataType::Timestamp(TimeUnit::Microsecond, None)
        );
        let m = table("measurement").unwrap();
        let v = &m.columns[m.column_index("value_as_number").unwrap()];
        assert_eq!(v.data_type, DataType::Float64);
        assert!(v.nullable);
        let visit = table("visit_occurrence").unwrap();
        assert_eq!(
            visit.columns[visit.column_index("visit_start_date").unwrap()].data_type,
            DataType::Date32
        );
    }

    #[test]
    fn identifiers_are_people_and_events_not_concepts() {
        for id in [
            "person_id",
            "visit_occurrence_id",
            "condition_occurrence_id",
            "measurement_id",
            "preceding_visit_occurrence_id",
            "person_source_value",
        ] {
            assert!(is_identifier(id), "{id}");
        }
        for not in [
            "gender_concept_id",
            "concept_id",
            "care_site_id",
            "year_of_birth",
            "value_as_number",
        ] {
            assert!(!is_identifier(not), "{not}");
        }
        let schema = table("person").unwrap().arrow_schema();
        assert!(
            schema
                .field(0)
                .metadata()
                .contains_key(IDENTIFIER_METADATA_KEY)
        );
        assert!(schema.field(1).metadata().is_empty());
    }

    #[test]
    fn matches_the_shared_ddl_when_present() {
        // The shipped copy must be the published DDL, byte for byte.
        let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/testdata/omop/OMOPCDM_postgresql_5.4_ddl.sql");
        match std::fs::read_to_string(&shared) {
            Ok(text) => assert_eq!(text, DDL),
            Err(_) => eprintln!("skipped: {} not present", shared.display()),
        }
    }
}
