-- depends: 0010_operations_role_and_second_approval
-- The access log: who looked at which child's record (every view, every search with the uids it returned,
-- every list of children, break-glass and brokering views, payload decodes, and reads of this log itself).
--
-- Its own stream beside the audit log (a busy directory writes far more reads than changes), under the same
-- protections (shielding.audit_signing, ACCESS_LOG): each entry signed by the service with a key the database
-- never holds, numbered without gaps from the head's row lock, hash-chained by the trigger, anchored to a file
-- outside the database; append-only for the service role. The uids are a jsonb array (GIN-indexed), so "who
-- viewed this child" is an index lookup.
--
-- Unlike the audit log it is not kept for ever: `prune_access_log` (the only way to remove entries, run by the
-- retention schedule) removes the oldest entries, a prefix only, and records in the head where the kept log
-- now starts and the hash of the last entry removed, so what is kept still verifies from there. Each prune is
-- audited (how many, up to which entry), and verify checks the head against that audit entry.

CREATE TABLE access_log (
    entry_id    bigint PRIMARY KEY,
    at          timestamptz NOT NULL,
    actor       text NOT NULL,
    front_end   text NOT NULL CHECK (front_end IN ('web', 'api', 'cli', 'worker')),
    kind        text NOT NULL,
    request_id  text,
    child_uids  jsonb NOT NULL DEFAULT '[]',
    details     jsonb NOT NULL DEFAULT '{}',
    key_id      text,
    mac         text,
    prev_hash   text NOT NULL,
    entry_hash  text NOT NULL
);
CREATE INDEX access_log_children ON access_log USING gin (child_uids jsonb_path_ops);
CREATE INDEX access_log_actor ON access_log (actor, at);
CREATE INDEX access_log_at ON access_log (at);

CREATE TABLE access_chain_head (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_hash      text NOT NULL,
    last_entry_id  bigint NOT NULL,
    last_at        timestamptz,
    signed_from    bigint NOT NULL,
    -- The first entry kept (retention removed the ones before it) and the hash of the last one removed.
    retained_from  bigint NOT NULL DEFAULT 1,
    pruned_hash    text
);
INSERT INTO access_chain_head (last_hash, last_entry_id, signed_from)
    VALUES (repeat('0', 64), 0, 1);

CREATE FUNCTION access_entry_digest(e access_log) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT encode(sha256(convert_to(
        concat_ws('|', e.entry_id::text, to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'),
                  e.actor, e.front_end, e.kind, coalesce(e.request_id, ''), e.child_uids::text, e.details::text,
                  e.prev_hash),
        'UTF8')), 'hex')
$$;

CREATE FUNCTION access_log_chain() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    head access_chain_head;
BEGIN
    SELECT * INTO head FROM access_chain_head WHERE singleton FOR UPDATE;
    IF NEW.entry_id IS NULL THEN
        NEW.entry_id := head.last_entry_id + 1;
    ELSIF NEW.entry_id <> head.last_entry_id + 1 THEN
        RAISE EXCEPTION 'access log entries are numbered without gaps: the next is %, not %',
            head.last_entry_id + 1, NEW.entry_id USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.at IS NULL THEN
        NEW.at := greatest(clock_timestamp(), head.last_at);
    ELSIF NEW.at < head.last_at THEN
        RAISE EXCEPTION 'access log entries are in time order: entry % is earlier than the one before it',
            NEW.entry_id USING ERRCODE = 'check_violation';
    END IF;
    NEW.prev_hash := head.last_hash;
    NEW.entry_hash := '';
    NEW.entry_hash := access_entry_digest(NEW);
    UPDATE access_chain_head
        SET last_hash = NEW.entry_hash, last_entry_id = NEW.entry_id, last_at = NEW.at
        WHERE singleton;
    RETURN NEW;
END
$$;
CREATE TRIGGER access_log_chain BEFORE INSERT ON access_log FOR EACH ROW EXECUTE FUNCTION access_log_chain();

-- Append-only: no update, no truncate, and a delete only inside prune_access_log.
CREATE FUNCTION access_log_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('shielding.pruning_access_log', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'the access log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER access_log_no_update BEFORE UPDATE OR DELETE ON access_log
    FOR EACH ROW EXECUTE FUNCTION access_log_refuse_change();
CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON access_log
    FOR EACH STATEMENT EXECUTE FUNCTION access_log_refuse_change();

-- Retention: remove the entries older than `older_than` (a prefix: times follow numbers), at most `batch` of
-- them; returns how many were removed and the last one removed. Runs as the owner (SECURITY DEFINER): the
-- service role may call it, and may not delete otherwise.
CREATE FUNCTION prune_access_log(older_than timestamptz, batch integer)
RETURNS TABLE (removed bigint, through bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    head access_chain_head;
    last_removed access_log;
BEGIN
    SELECT * INTO head FROM access_chain_head WHERE singleton FOR UPDATE;
    SELECT * INTO last_removed FROM (
        SELECT * FROM access_log
        WHERE entry_id >= head.retained_from AND at < older_than
        ORDER BY entry_id LIMIT batch
    ) oldest ORDER BY entry_id DESC LIMIT 1;
    IF last_removed.entry_id IS NULL THEN
        RETURN QUERY SELECT 0::bigint, NULL::bigint;
        RETURN;
    END IF;
    PERFORM set_config('shielding.pruning_access_log', 'on', true);
    DELETE FROM access_log WHERE entry_id <= last_removed.entry_id;
    PERFORM set_config('shielding.pruning_access_log', 'off', true);
    UPDATE access_chain_head
        SET retained_from = last_removed.entry_id + 1, pruned_hash = last_removed.entry_hash
        WHERE singleton;
    RETURN QUERY SELECT last_removed.entry_id - head.retained_from + 1, last_removed.entry_id;
END
$$;

REVOKE ALL ON access_log, access_chain_head FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION prune_access_log(timestamptz, integer) FROM PUBLIC;
GRANT SELECT, INSERT ON access_log TO shielding_service;
GRANT SELECT, UPDATE ON access_chain_head TO shielding_service;
GRANT EXECUTE ON FUNCTION access_entry_digest(access_log) TO shielding_service;
GRANT EXECUTE ON FUNCTION access_log_chain() TO shielding_service;
GRANT EXECUTE ON FUNCTION access_log_refuse_change() TO shielding_service;
GRANT EXECUTE ON FUNCTION prune_access_log(timestamptz, integer) TO shielding_service;
