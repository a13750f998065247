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

-- Nothing changes or removes an entry through SQL either (an attacker with file access can drop
-- these triggers; `medfed audit verify` is what catches that).
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER audit_checkpoint_no_update BEFORE UPDATE ON audit_checkpoint
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER audit_checkpoint_no_delete BEFORE DELETE ON audit_checkpoint
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
