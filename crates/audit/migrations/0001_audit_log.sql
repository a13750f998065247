-- The audit trail: append-only, each entry holding the hash of the one before it.
CREATE TABLE audit_log (
    seq           BIGINT PRIMARY KEY,
    at_us         BIGINT NOT NULL,
    actor         TEXT NOT NULL,
    role          TEXT NOT NULL,
    action        TEXT NOT NULL,
    study         TEXT,
    sites         TEXT NOT NULL,
    decision      TEXT NOT NULL,
    reason        TEXT NOT NULL,
    result_digest TEXT,
    epsilon       DOUBLE PRECISION,
    request_id    TEXT,
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL
);

-- Signed checkpoints: the node's Ed25519 signature over (seq, hash), so that rewriting the whole
-- chain after a change is detectable by anyone holding the node's public key.
CREATE TABLE audit_checkpoint (
    seq        BIGINT PRIMARY KEY,
    hash       TEXT NOT NULL,
    at_us      BIGINT NOT NULL,
    public_key TEXT NOT NULL,
    signature  TEXT NOT NULL
);
