-- Undo on rehire (README, "Undo on rehire") adds five actions that give back what an
-- offboarding took: enable_account, cancel_delete_account, add_to_group, add_to_service_desk
-- and add_to_customer_organization. The action CHECK of jobs lists every action.
ALTER TABLE jobs DROP CONSTRAINT jobs_action_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_action_check CHECK (action IN (
    'revoke_portal_access', 'delete_portal_customer', 'remove_from_service_desk',
    'remove_from_customer_organization', 'suspend_access', 'restore_access',
    'remove_from_directory', 'remove_from_group', 'deactivate_account', 'delete_account',
    'enable_account', 'cancel_delete_account', 'add_to_group', 'add_to_service_desk',
    'add_to_customer_organization'));
