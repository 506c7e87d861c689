-- A new action needs no migration. The action CHECK of jobs listed every action, so each new
-- one took a migration here and a rebuild of jobs on SQLite. The actions are now the rows of
-- a reference table, which the store seeds from `Action::ALL` (src/domain/action.rs) every
-- time it migrates (src/store/same_sql.rs, `migrate`), and jobs.action references it. The
-- fifteen actions the CHECK allowed are seeded here too, so that the foreign key finds the
-- action of every job already there.
CREATE TABLE actions (
    name TEXT PRIMARY KEY
);
INSERT INTO actions (name) VALUES
    ('revoke_portal_access'), ('delete_portal_customer'), ('remove_from_service_desk'),
    ('remove_from_customer_organization'), ('suspend_access'), ('restore_access'),
    ('remove_from_directory'), ('remove_from_group'), ('deactivate_account'),
    ('delete_account'), ('enable_account'), ('cancel_delete_account'), ('add_to_group'),
    ('add_to_service_desk'), ('add_to_customer_organization');

ALTER TABLE jobs DROP CONSTRAINT jobs_action_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_action_fkey FOREIGN KEY (action) REFERENCES actions (name);
