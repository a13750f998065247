-- Multi-round releases (a DP-FedAvg training run): charged once in full when the site first
-- takes part, then counted round by round so the run cannot ask for more rounds than it paid for.
CREATE TABLE IF NOT EXISTS privacy_runs (
    study_id      TEXT NOT NULL,
    run_id        TEXT NOT NULL,
    rounds_total  BIGINT NOT NULL,
    rounds_used   BIGINT NOT NULL,
    epsilon       DOUBLE PRECISION NOT NULL,
    delta         DOUBLE PRECISION NOT NULL,
    at_us         BIGINT NOT NULL,
    PRIMARY KEY (study_id, run_id)
);
