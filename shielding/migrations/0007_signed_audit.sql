-- depends: 0006_accounts_and_sessions
-- Signed audit entries, numbered without gaps (shielding.audit_signing).
--
-- The service now signs each entry (key_id, mac: HMAC-SHA256 with a key the database never holds) over its
-- number, time, content and the previous entry's hash, and `audit verify` checks that in Python. For that the
-- service must know an entry's number, time and previous hash before it inserts it, so it takes them from the
-- chain head under the head's row lock (held until commit), and the trigger only checks them:
--   * entry_id is the head's last_entry_id + 1: no sequence, so a rolled-back transaction burns no number and
--     a gap can only mean a removed entry;
--   * `at` is never earlier than the entry before it;
--   * prev_hash and entry_hash are still the trigger's (the hash chain stays as it was).
-- An insert that names no entry_id (anything but the service's append) gets the next number, and no signature:
-- `audit verify` reports it. Entries written before this migration carry no signature; signed_from is the
-- first entry that must, and the first signed entry's signature covers the hash of every entry before it.

-- No entry may be added while the head is being extended (a writer holding the head waits, then is seen).
LOCK TABLE audit_chain_head IN EXCLUSIVE MODE;

ALTER TABLE audit_log ADD COLUMN key_id text, ADD COLUMN mac text;
-- The trigger gives an entry without a time its time, after it holds the head (never before the last entry's).
ALTER TABLE audit_log ALTER COLUMN at DROP DEFAULT;

ALTER TABLE audit_chain_head
    ADD COLUMN last_entry_id bigint,
    ADD COLUMN last_at timestamptz,
    ADD COLUMN signed_from bigint;
UPDATE audit_chain_head SET
    last_entry_id = coalesce((SELECT max(entry_id) FROM audit_log), 0),
    last_at = (SELECT max(at) FROM audit_log),
    signed_from = coalesce((SELECT max(entry_id) FROM audit_log), 0) + 1;
ALTER TABLE audit_chain_head
    ALTER COLUMN last_entry_id SET NOT NULL,
    ALTER COLUMN signed_from SET NOT NULL;

CREATE OR REPLACE FUNCTION audit_log_chain() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    head audit_chain_head;
BEGIN
    SELECT * INTO head FROM audit_chain_head WHERE singleton FOR UPDATE;
    IF NEW.entry_id IS NULL THEN
        NEW.entry_id := head.last_entry_id + 1;
    ELSIF NEW.entry_id <> head.last_entry_id + 1 THEN
        RAISE EXCEPTION 'audit entries are numbered without gaps: the next is %, not %',
            head.last_entry_id + 1, NEW.entry_id USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.at IS NULL THEN
        NEW.at := greatest(clock_timestamp(), head.last_at);
    ELSIF NEW.at < head.last_at THEN
        RAISE EXCEPTION 'audit entries are in time order: entry % is earlier than the one before it',
            NEW.entry_id USING ERRCODE = 'check_violation';
    END IF;
    NEW.prev_hash := head.last_hash;
    NEW.entry_hash := '';
    NEW.entry_hash := audit_entry_digest(NEW);
    UPDATE audit_chain_head
        SET last_hash = NEW.entry_hash, last_entry_id = NEW.entry_id, last_at = NEW.at
        WHERE singleton;
    RETURN NEW;
END
$$;

-- Nothing draws numbers from the old sequence any more (0003 took its default away; the trigger no longer
-- calls it).
DROP SEQUENCE IF EXISTS audit_log_entry_id_seq;
