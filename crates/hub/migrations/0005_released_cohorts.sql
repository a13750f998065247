-- Complementary suppression: which cohort (the rows aggregated, as a digest of the normalised
-- plan) and which group keys (a JSON list) each released group belongs to, so a later release of
-- the same cohort grouped by more or fewer keys can be checked against it as a margin. Every
-- release's cells are kept (not only sizes not seen before): a margin is one release's table.
ALTER TABLE released_cells ADD COLUMN cohort TEXT NOT NULL DEFAULT '';
ALTER TABLE released_cells ADD COLUMN dims TEXT NOT NULL DEFAULT '[]';
CREATE INDEX released_cells_cohort ON released_cells(study_id, cohort);
