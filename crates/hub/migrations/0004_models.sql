-- The model registry: a model is a name; each training run that released a model under a study
-- is a version, with what it was trained on (parameters), how well it fits (metrics), the
-- released model itself (artifact: coefficients), the ε it spent, the sites that took part and
-- the digest that links it to its entry in the audit trail. Only released, aggregate results
-- are stored: the same the researcher was shown.
CREATE TABLE models (
    name        TEXT PRIMARY KEY,
    created_by  TEXT NOT NULL,
    created_us  BIGINT NOT NULL
);
CREATE TABLE model_versions (
    model         TEXT NOT NULL REFERENCES models(name),
    version       BIGINT NOT NULL,
    kind          TEXT NOT NULL,
    study_id      TEXT NOT NULL,
    trained_by    TEXT NOT NULL,
    parameters    TEXT NOT NULL,
    metrics       TEXT NOT NULL,
    artifact      TEXT NOT NULL,
    epsilon       DOUBLE PRECISION NOT NULL,
    sites         TEXT NOT NULL,
    audit_digest  TEXT NOT NULL,
    created_us    BIGINT NOT NULL,
    PRIMARY KEY (model, version)
);
