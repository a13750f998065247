-- The airlock's memory: per study and grouping, how many people each released group had, so
-- a later release that differs from an earlier one by fewer than k people (differencing) is
-- refused. Only counts of people and group labels are kept, never statistics.
CREATE TABLE released_cells (
    study_id    TEXT NOT NULL,
    grouping    TEXT NOT NULL,
    group_key   TEXT NOT NULL,
    people      BIGINT NOT NULL,
    request_id  TEXT NOT NULL,
    at_us       BIGINT NOT NULL
);
CREATE INDEX released_cells_lookup ON released_cells(study_id, grouping, group_key);
