//! OpenAPI schemas for shapes serde accepts more narrowly than utoipa describes them: a
//! `[low, high]` pair is exactly two numbers, which utoipa would describe as any-length arrays;
//! a study's analyses come from a fixed list.
//! Used with `#[schema(schema_with = …)]` so the hub's `/openapi.json` promises only what it
//! accepts (and a fuzzer generating from it, e.g. schemathesis, sends bodies it can read).
//!
//! # Example
//! ```
//! let json = serde_json::to_value(medfed_core::schema::interval()).unwrap();
//! assert_eq!(json["minItems"], 2);
//! assert_eq!(json["maxItems"], 2);
//! ```
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    Array, ArrayBuilder, KnownFormat, Object, ObjectBuilder, Schema, SchemaFormat, Type,
};

/// `[low, high]`: two numbers.
pub fn interval() -> Array {
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Double))),
        )
        .min_items(Some(2))
        .max_items(Some(2))
        .description(Some("`[low, high]`"))
        .build()
}

/// `{name: [low, high], …}`.
pub fn intervals_by_name() -> Object {
    ObjectBuilder::new()
        .additional_properties(Some(RefOr::T(Schema::Array(interval()))))
        .description(Some("`[low, high]` by name"))
        .build()
}

/// `[[low, high], …]`.
pub fn intervals() -> Array {
    ArrayBuilder::new()
        .items(RefOr::T(Schema::Array(interval())))
        .description(Some("one `[low, high]` (or `[mean, sd]`) per input"))
        .build()
}

/// A study's analyses: one or more of [`crate::study::ANALYSES`].
pub fn analyses() -> Array {
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(crate::study::ANALYSES.iter().copied())),
        )
        .min_items(Some(1))
        .description(Some(
            "Analyses allowed: one or more of sql, stats, glm, survival, fedavg.",
        ))
        .build()
}
