-- Row-level security (seed 001): a custodian's connection (role medfed_custodian with the setting
-- medfed.site naming their site) sees and decides only its own site's rows, whatever the hub's
-- code does. The hub switches to that role for every custodian action.
DO $$ BEGIN
    CREATE ROLE medfed_custodian NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
DO $$ BEGIN
    EXECUTE format('GRANT medfed_custodian TO %I', current_user);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO medfed_custodian', current_schema());
END $$;
GRANT SELECT ON studies TO medfed_custodian;
GRANT SELECT, UPDATE ON study_sites TO medfed_custodian;
GRANT SELECT ON releases TO medfed_custodian;

ALTER TABLE study_sites ENABLE ROW LEVEL SECURITY;
CREATE POLICY study_sites_own_site ON study_sites TO medfed_custodian
    USING (site = current_setting('medfed.site', true))
    WITH CHECK (site = current_setting('medfed.site', true));
-- The hub's own role keeps full access.
CREATE POLICY study_sites_hub ON study_sites TO PUBLIC USING (current_user <> 'medfed_custodian');

ALTER TABLE releases ENABLE ROW LEVEL SECURITY;
CREATE POLICY releases_own_site ON releases TO medfed_custodian
    USING (current_setting('medfed.site', true) = ANY (string_to_array(sites, ',')));
CREATE POLICY releases_hub ON releases TO PUBLIC USING (current_user <> 'medfed_custodian');
