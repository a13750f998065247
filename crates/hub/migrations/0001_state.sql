-- The hub's own state: people, their API tokens (argon2 hashes only), studies and each site's
-- decision on them, and the record of what was released.
CREATE TABLE users (
    name          TEXT PRIMARY KEY,
    roles         TEXT NOT NULL,           -- comma-separated
    sites         TEXT NOT NULL,           -- comma-separated (custodians)
    created_at_us BIGINT NOT NULL,
    disabled_at_us BIGINT
);

CREATE TABLE api_tokens (
    id            TEXT PRIMARY KEY,        -- public part of the token
    user_name     TEXT NOT NULL REFERENCES users(name),
    hash          TEXT NOT NULL,           -- argon2id PHC string of the secret part
    created_at_us BIGINT NOT NULL,
    expires_at_us BIGINT,
    revoked_at_us BIGINT
);

CREATE TABLE studies (
    id            TEXT PRIMARY KEY,
    title         TEXT NOT NULL,
    purpose       TEXT NOT NULL,
    proposer      TEXT NOT NULL,
    members       TEXT NOT NULL,           -- comma-separated
    terms         TEXT NOT NULL,           -- JSON StudyTerms
    created_at_us BIGINT NOT NULL
);

CREATE TABLE study_sites (
    study_id      TEXT NOT NULL REFERENCES studies(id),
    site          TEXT NOT NULL,
    state         TEXT NOT NULL,           -- pending | approved | rejected
    decided_by    TEXT,
    reason        TEXT,
    decided_at_us BIGINT,
    PRIMARY KEY (study_id, site)
);

CREATE TABLE releases (
    request_id    TEXT PRIMARY KEY,
    study_id      TEXT NOT NULL REFERENCES studies(id),
    researcher    TEXT NOT NULL,
    sql_digest    TEXT NOT NULL,
    result_digest TEXT NOT NULL,
    sites         TEXT NOT NULL,           -- comma-separated: the sites whose partials were merged
    at_us         BIGINT NOT NULL
);
CREATE INDEX releases_by_study ON releases(study_id);
