-- depends: 0005_search_extensions
-- The front door: accounts (local passwords or an identity provider's subject), server-side sessions, failed
-- sign-ins, pending device sign-ins; and real database roles: a NOLOGIN owner, the service's login, and the
-- practitioners' role that the service assumes (SET LOCAL ROLE) for every practitioner read.

CREATE TABLE accounts (
    name           text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9._@-]{1,64}$'),
    -- argon2id; NULL for accounts that sign in only through the identity provider.
    password_hash  text,
    oidc_subject   text UNIQUE,
    created_by     text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    disabled_at    timestamptz
);

-- Every signed-in session, whichever process created it: a cookie (pages) or a bearer token (API, CLI).
-- Only a digest of the token is kept, so a copy of this table signs no one in.
CREATE TABLE sessions (
    token_digest   text PRIMARY KEY CHECK (token_digest ~ '^[0-9a-f]{64}$'),
    name           text NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
    kind           text NOT NULL CHECK (kind IN ('cookie', 'bearer')),
    csrf_token     text NOT NULL,
    auth_method    text NOT NULL CHECK (auth_method IN ('password', 'oidc')),
    authenticated_at timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now(),
    ended_at       timestamptz
);
CREATE INDEX sessions_name ON sessions (name) WHERE ended_at IS NULL;

-- Failed sign-ins by name, for slowing repeated guesses (shared by every service process).
CREATE TABLE sign_in_failures (
    failure_id  bigserial PRIMARY KEY,
    name        text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sign_in_failures_name_at ON sign_in_failures (name, at);

-- Device-code sign-ins (`shielding login` against the identity provider) waiting for the person to approve.
CREATE TABLE device_sign_ins (
    handle_digest  text PRIMARY KEY CHECK (handle_digest ~ '^[0-9a-f]{64}$'),
    device_code    text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL
);

-- A refused request names its children only in the audit entry's details: index them for `audit --child`.
CREATE INDEX audit_log_detail_children ON audit_log USING gin ((details -> 'children'));

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'shielding_owner') THEN
        CREATE ROLE shielding_owner NOLOGIN;
    END IF;
END
$$;
-- No person logs in as a practitioner: the service assumes the role for practitioners' reads.
ALTER ROLE shielding_practitioner NOLOGIN;
GRANT shielding_practitioner TO shielding_service;

GRANT SELECT, INSERT, UPDATE, DELETE ON accounts, sessions, sign_in_failures, device_sign_ins TO shielding_service;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO shielding_service;

-- Ownership of every object moves to shielding_owner after each migration run (`shielding.store.db.migrate`),
-- so no login owns anything and the SECURITY DEFINER functions run as a role that cannot log in.
