-- Releases held for review: a check marked "review" fired, so the result waits here until a
-- custodian of every contributing site approves it (or one rejects it). `held` is the whole
-- pending release (result, what to record on release, the audit line), released only on approval.
CREATE TABLE reviews (
    id          TEXT PRIMARY KEY,
    study_id    TEXT NOT NULL,
    researcher  TEXT NOT NULL,
    sql_text    TEXT NOT NULL,
    checks      TEXT NOT NULL,
    sites       TEXT NOT NULL,
    held        TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_us  BIGINT NOT NULL
);
CREATE TABLE review_decisions (
    review_id   TEXT NOT NULL,
    site        TEXT NOT NULL,
    decided_by  TEXT NOT NULL,
    decision    TEXT NOT NULL,
    reason      TEXT,
    at_us       BIGINT NOT NULL,
    PRIMARY KEY (review_id, site)
);
