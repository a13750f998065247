-- A site's privacy-budget ledger: one row per study (its total and what has been spent) and one
-- row per charged release. Portable SQL for SQLite and PostgreSQL.
CREATE TABLE IF NOT EXISTS privacy_budgets (
    study_id       TEXT PRIMARY KEY,
    epsilon_total  DOUBLE PRECISION NOT NULL,
    delta_total    DOUBLE PRECISION NOT NULL,
    epsilon_spent  DOUBLE PRECISION NOT NULL DEFAULT 0,
    delta_spent    DOUBLE PRECISION NOT NULL DEFAULT 0,
    updated_us     BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS privacy_charges (
    study_id    TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    epsilon     DOUBLE PRECISION NOT NULL,
    delta       DOUBLE PRECISION NOT NULL,
    at_us       BIGINT NOT NULL,
    PRIMARY KEY (study_id, request_id)
);
