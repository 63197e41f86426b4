-- The operations staff who run the service (they read workflows in the Temporal Web UI through its codec
-- endpoint), and a second manager's approval for one person holding roles that check each other's work
-- (taking a request and deciding it): the first manager's ask waits here until another manager approves it.

ALTER TABLE user_roles DROP CONSTRAINT IF EXISTS user_roles_role_check;
ALTER TABLE user_roles ADD CONSTRAINT user_roles_role_check
    CHECK (role IN ('intake', 'reviewer', 'manager', 'practitioner', 'child-protection', 'operations'));

CREATE TABLE role_approvals (
    name          text NOT NULL CHECK (name ~ '^[A-Za-z0-9._@-]{1,64}$'),
    role          text NOT NULL,
    requested_by  text NOT NULL,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, role)
);

GRANT SELECT, INSERT, DELETE ON role_approvals TO shielding_service;
