-- depends: 0002_users_and_roles
-- The audit chain must follow entry_id order, the order `audit verify` checks it in.
--
-- Before this, entry_id (the column default) and `at` were taken before the trigger locked the chain head,
-- so two concurrent writers could take ids 7 and 8 and then lock the head in the order 8, 7: entry 7 then
-- pointed at entry 8's hash and `audit verify` reported a tampered log that nobody had touched. Now both are
-- taken after the lock, which is held until commit, so chain order, id order and time order are one order.
-- No default is left on entry_id, so no id is drawn and then thrown away (a gap reads like a deleted entry);
-- an entry_id or `at` supplied by the writer is overwritten.

ALTER TABLE audit_log ALTER COLUMN entry_id DROP DEFAULT;

CREATE OR REPLACE FUNCTION audit_log_chain() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    head text;
BEGIN
    SELECT last_hash INTO head FROM audit_chain_head WHERE singleton FOR UPDATE;
    NEW.entry_id := nextval('audit_log_entry_id_seq');
    NEW.at := clock_timestamp();
    NEW.prev_hash := head;
    NEW.entry_hash := '';
    NEW.entry_hash := audit_entry_digest(NEW);
    UPDATE audit_chain_head SET last_hash = NEW.entry_hash WHERE singleton;
    RETURN NEW;
END
$$;
