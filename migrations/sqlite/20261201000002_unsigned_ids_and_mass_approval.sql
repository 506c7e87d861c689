-- Mass offboarding needs a person (src/store/model.rs, `require_approval_above`): the
-- delivery row keeps why all of its jobs wait for approval, for the console.
ALTER TABLE deliveries ADD COLUMN approval_required TEXT;
