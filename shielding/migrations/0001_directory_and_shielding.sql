-- The child directory, shielding requests, the append-only audit log and the notification outbox.

CREATE TABLE children (
    uid               text PRIMARY KEY CHECK (uid ~ '^[A-Za-z0-9][A-Za-z0-9-]{0,63}$'),
    given_name        text NOT NULL,
    family_name       text NOT NULL,
    aliases           text[] NOT NULL DEFAULT '{}',
    gender            text NOT NULL CHECK (gender IN ('female', 'male', 'other', 'unknown')),
    date_of_birth     date NOT NULL,
    address           jsonb,
    carers            jsonb NOT NULL DEFAULT '[]',
    school            text,
    gp_practice       text,
    practitioners     jsonb NOT NULL DEFAULT '[]',
    -- The request whose shield hides this record; NULL when the record is not shielded. One column, so a
    -- child can never have two active shieldings.
    shield_request_id text,
    imported_at       timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX children_name_dob ON children (lower(family_name), lower(given_name), date_of_birth);
CREATE INDEX children_dob ON children (date_of_birth);
CREATE INDEX children_shield_request ON children (shield_request_id) WHERE shield_request_id IS NOT NULL;

CREATE TABLE shielding_requests (
    request_id        text PRIMARY KEY CHECK (request_id ~ '^SR-[A-Z0-9]{12}$'),
    stage             text NOT NULL,
    criteria          text[] NOT NULL,
    other_description text,
    reason            text NOT NULL,
    requestor         jsonb NOT NULL,
    called_at         timestamptz NOT NULL,
    received_by       text NOT NULL,
    received_at       timestamptz NOT NULL DEFAULT now(),
    shielded_at       timestamptz,
    form_due_at       timestamptz,
    form_received_at  timestamptz,
    closed_at         timestamptz,
    closed_reason     text
);

-- Which children a request covers, and when each was shielded and unshielded.
CREATE TABLE request_children (
    request_id   text NOT NULL REFERENCES shielding_requests (request_id),
    child_uid    text NOT NULL REFERENCES children (uid),
    outcome      text NOT NULL CHECK (outcome IN ('shielded', 'duplicate', 'linked-duplicate-record')),
    existing_request_id text,
    shielded_at  timestamptz,
    unshielded_at timestamptz,
    PRIMARY KEY (request_id, child_uid)
);
CREATE INDEX request_children_child ON request_children (child_uid);

-- Documents arrive before the workflow is told; they are linked to a request only when the form is accepted.
CREATE TABLE form_documents (
    document_id  uuid PRIMARY KEY,
    request_id   text NOT NULL,
    filename     text NOT NULL,
    sha256       text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes   bigint NOT NULL CHECK (size_bytes > 0),
    content      bytea NOT NULL,
    uploaded_at  timestamptz NOT NULL DEFAULT now(),
    accepted_at  timestamptz
);
CREATE INDEX form_documents_request ON form_documents (request_id);

-- The outbox: a relay (outside this service) delivers and marks rows sent.
CREATE TABLE notifications (
    notification_id bigserial PRIMARY KEY,
    created_at      timestamptz NOT NULL DEFAULT now(),
    recipient_kind  text NOT NULL CHECK (recipient_kind IN ('requestor', 'reviewers', 'managers')),
    recipient       text NOT NULL,
    request_id      text,
    subject         text NOT NULL,
    body            text NOT NULL,
    sent_at         timestamptz
);

-- Each activity's effect is recorded under its idempotency key in the same transaction, so a retried
-- activity finds its earlier result instead of acting twice.
CREATE TABLE completed_operations (
    operation_key text PRIMARY KEY,
    completed_at  timestamptz NOT NULL DEFAULT now(),
    result        jsonb
);

CREATE TABLE audit_log (
    entry_id     bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    action       text NOT NULL,
    actor        text NOT NULL,
    request_id   text,
    child_uid    text,
    requestor    jsonb,
    reason       text,
    details      jsonb NOT NULL DEFAULT '{}',
    prev_hash    text NOT NULL,
    entry_hash   text NOT NULL
);
CREATE INDEX audit_log_request ON audit_log (request_id, entry_id);
CREATE INDEX audit_log_child ON audit_log (child_uid, entry_id);

-- A single row holds the hash of the newest entry; locking it orders concurrent writers into one chain.
CREATE TABLE audit_chain_head (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_hash  text NOT NULL
);
INSERT INTO audit_chain_head VALUES (true, repeat('0', 64));

CREATE FUNCTION audit_entry_digest(e audit_log) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT encode(sha256(convert_to(
        concat_ws('|', e.entry_id::text, to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'),
                  e.action, e.actor, coalesce(e.request_id, ''), coalesce(e.child_uid, ''),
                  coalesce(e.requestor::text, ''), coalesce(e.reason, ''), e.details::text, e.prev_hash),
        'UTF8')), 'hex')
$$;

CREATE FUNCTION audit_log_chain() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    head text;
BEGIN
    SELECT last_hash INTO head FROM audit_chain_head WHERE singleton FOR UPDATE;
    NEW.prev_hash := head;
    NEW.entry_hash := '';
    NEW.entry_hash := audit_entry_digest(NEW);
    UPDATE audit_chain_head SET last_hash = NEW.entry_hash WHERE singleton;
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_chain();

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

-- What a practitioner sees: for a shielded child, only the uid, names, gender and date of birth.
-- This view (and search_children below) is the practitioners' only read path.
CREATE VIEW practitioner_children AS
SELECT uid, given_name, family_name, aliases, gender, date_of_birth,
       (shield_request_id IS NOT NULL) AS shielded,
       CASE WHEN shield_request_id IS NULL THEN address END AS address,
       CASE WHEN shield_request_id IS NULL THEN carers END AS carers,
       CASE WHEN shield_request_id IS NULL THEN school END AS school,
       CASE WHEN shield_request_id IS NULL THEN gp_practice END AS gp_practice,
       CASE WHEN shield_request_id IS NULL THEN practitioners END AS practitioners
FROM children;

-- Search that never lets a hidden field select a shielded record: a criterion on postcode or school only
-- matches unshielded rows, so neither results, counts nor ordering reveal where a shielded child is.
CREATE FUNCTION search_children(
    p_given_name text, p_family_name text, p_date_of_birth date, p_gender text,
    p_postcode text, p_school text, p_limit integer
) RETURNS SETOF practitioner_children
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT v.*
    FROM children c JOIN practitioner_children v ON v.uid = c.uid
    WHERE (p_given_name IS NULL OR lower(c.given_name) = lower(p_given_name)
           OR EXISTS (SELECT 1 FROM unnest(c.aliases) a WHERE lower(a) = lower(p_given_name)))
      AND (p_family_name IS NULL OR lower(c.family_name) = lower(p_family_name)
           OR EXISTS (SELECT 1 FROM unnest(c.aliases) a WHERE lower(a) = lower(p_family_name)))
      AND (p_date_of_birth IS NULL OR c.date_of_birth = p_date_of_birth)
      AND (p_gender IS NULL OR c.gender = p_gender)
      AND (p_postcode IS NULL OR (c.shield_request_id IS NULL AND
           upper(replace(c.address->>'postcode', ' ', '')) = upper(replace(p_postcode, ' ', ''))))
      AND (p_school IS NULL OR (c.shield_request_id IS NULL AND lower(c.school) = lower(p_school)))
    ORDER BY lower(c.family_name), lower(c.given_name), c.date_of_birth, c.uid
    LIMIT greatest(1, least(coalesce(p_limit, 50), 500))
$$;
