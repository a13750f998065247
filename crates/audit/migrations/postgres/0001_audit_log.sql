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

-- Nothing changes or removes an entry through SQL either (a superuser can drop these triggers;
-- `medfed audit verify` is what catches that).
CREATE FUNCTION medfed_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit log is append-only';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION medfed_audit_append_only();
CREATE TRIGGER audit_checkpoint_append_only BEFORE UPDATE OR DELETE ON audit_checkpoint
    FOR EACH ROW EXECUTE FUNCTION medfed_audit_append_only();
