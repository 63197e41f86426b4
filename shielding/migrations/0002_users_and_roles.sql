-- depends: 0001_directory_and_shielding
-- Who may act (application users and their roles) and what each database role may touch.

CREATE TABLE user_roles (
    name      text NOT NULL CHECK (name ~ '^[A-Za-z0-9._@-]{1,64}$'),
    role      text NOT NULL CHECK (role IN ('intake', 'reviewer', 'manager', 'practitioner', 'child-protection')),
    added_by  text NOT NULL,
    added_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, role)
);

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'shielding_practitioner') THEN
        CREATE ROLE shielding_practitioner LOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'shielding_service') THEN
        CREATE ROLE shielding_service LOGIN;
    END IF;
END
$$;

-- Nothing is readable by default; each role gets exactly what it needs.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- Practitioners: the redacting view and the search function, nothing else.
GRANT USAGE ON SCHEMA public TO shielding_practitioner;
GRANT SELECT ON practitioner_children TO shielding_practitioner;
GRANT EXECUTE ON FUNCTION search_children(text, text, date, text, text, text, integer) TO shielding_practitioner;

-- The service writes; the audit log only grows.
GRANT USAGE ON SCHEMA public TO shielding_service;
GRANT SELECT, INSERT, UPDATE, DELETE ON children, shielding_requests, request_children, form_documents,
    notifications, completed_operations, user_roles TO shielding_service;
GRANT SELECT, UPDATE ON audit_chain_head TO shielding_service;
GRANT SELECT, INSERT ON audit_log TO shielding_service;
GRANT SELECT ON practitioner_children TO shielding_service;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO shielding_service;
GRANT EXECUTE ON FUNCTION search_children(text, text, date, text, text, text, integer) TO shielding_service;
GRANT EXECUTE ON FUNCTION audit_entry_digest(audit_log) TO shielding_service;
GRANT EXECUTE ON FUNCTION audit_log_chain() TO shielding_service;
GRANT EXECUTE ON FUNCTION audit_log_refuse_change() TO shielding_service;
