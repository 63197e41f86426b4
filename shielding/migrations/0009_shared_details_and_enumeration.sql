-- depends: 0006_accounts_and_sessions
-- Siblings and co-residents, and no bulk enumeration by practitioners.
--
-- 1. Every record's address keys (its own address and each carer's: normalised postcode + first line) and carer
--    keys (normalised name + phone digits) in `child_links`, kept by a trigger on every insert and update, so a
--    record that shares an address or a carer with a shielded record is known by an index lookup. While any
--    record sharing a key is shielded, the other record's address and carers are withheld on every read path
--    (`withheld`), and a search by a hidden field (postcode, school) never selects it.
-- 2. Practitioners read only through two functions: one record by uid (`practitioner_child`) and a search that
--    names a name and a date of birth (`search_children`, at most 21 rows: a page of 20 and whether there are
--    more). The role no longer selects from the view, so it cannot list or count shielded records; it is
--    NOLOGIN, so no one runs SQL of their own as it. The partial index on shielded rows is replaced by a whole
--    one, so no catalogue statistic (pg_class.reltuples, pg_stat_*_indexes) counts shielded rows.
-- 3. Directory reads counted per person in fixed windows (`directory_read_counts`), shared by every process.

-- ------------------------------------------------------------------------------------ 1. shared details

-- The first line of an address, as one key: lower case, punctuation as spaces, "street", "road" and "avenue" as
-- "st", "rd" and "ave", and a first line that is only a flat ("Flat 3") joined to the next ("27 Lisson Grove"),
-- so that two flats of one postcode are two addresses.
CREATE FUNCTION address_line_key(lines jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT regexp_replace(regexp_replace(regexp_replace(
               CASE WHEN first ~ '^(flat|apartment|apt|unit|room|maisonette|suite)( [a-z0-9]+)?$' AND second <> ''
                    THEN first || ' ' || second ELSE first END,
               '\mstreet\M', 'st', 'g'), '\mroad\M', 'rd', 'g'), '\mavenue\M', 'ave', 'g')
    FROM (
        SELECT btrim(regexp_replace(lower(coalesce(lines ->> 0, '')), '[^[:alnum:]]+', ' ', 'g')) AS first,
               btrim(regexp_replace(lower(coalesce(lines ->> 1, '')), '[^[:alnum:]]+', ' ', 'g')) AS second
        WHERE jsonb_typeof(lines) = 'array'
    ) parts
$$;

CREATE FUNCTION address_key(address jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN postcode <> '' AND line <> '' THEN postcode || '|' || line END
    FROM (
        SELECT upper(regexp_replace(coalesce(address ->> 'postcode', ''), '[^A-Za-z0-9]', '', 'g')) AS postcode,
               coalesce(address_line_key(address -> 'lines'), '') AS line
        WHERE jsonb_typeof(address) = 'object'
    ) parts
$$;

CREATE FUNCTION carer_key(carer jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN name <> '' THEN name || '|' || regexp_replace(phone, '^44', '0') END
    FROM (
        SELECT btrim(regexp_replace(lower(coalesce(carer ->> 'name', '')), '[^[:alnum:]]+', ' ', 'g')) AS name,
               regexp_replace(coalesce(carer ->> 'phone', ''), '[^0-9]', '', 'g') AS phone
        WHERE jsonb_typeof(carer) = 'object'
    ) parts
$$;

CREATE TABLE child_links (
    uid   text NOT NULL REFERENCES children (uid) ON DELETE CASCADE,
    kind  text NOT NULL CHECK (kind IN ('address', 'carer')),
    key   text NOT NULL,
    PRIMARY KEY (uid, kind, key)
);
CREATE INDEX child_links_key ON child_links (kind, key, uid);

CREATE FUNCTION child_link_keys(address jsonb, carers jsonb) RETURNS TABLE (kind text, key text)
LANGUAGE sql IMMUTABLE AS $$
    SELECT DISTINCT k.kind, k.key FROM (
        SELECT 'address' AS kind, address_key(address) AS key
        UNION ALL
        SELECT 'address', address_key(c -> 'address')
            FROM jsonb_array_elements(CASE WHEN jsonb_typeof(carers) = 'array' THEN carers ELSE '[]' END) c
        UNION ALL
        SELECT 'carer', carer_key(c)
            FROM jsonb_array_elements(CASE WHEN jsonb_typeof(carers) = 'array' THEN carers ELSE '[]' END) c
    ) k
    WHERE k.key IS NOT NULL
$$;

CREATE FUNCTION children_keep_links() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.address IS NOT DISTINCT FROM OLD.address
                        AND NEW.carers IS NOT DISTINCT FROM OLD.carers THEN
        RETURN NULL;
    END IF;
    DELETE FROM child_links WHERE uid = NEW.uid;
    INSERT INTO child_links (uid, kind, key) SELECT NEW.uid, k.kind, k.key FROM child_link_keys(NEW.address, NEW.carers) k;
    RETURN NULL;
END
$$;
CREATE TRIGGER children_keep_links AFTER INSERT OR UPDATE OF address, carers ON children
    FOR EACH ROW EXECUTE FUNCTION children_keep_links();

INSERT INTO child_links (uid, kind, key)
SELECT c.uid, k.kind, k.key FROM children c CROSS JOIN LATERAL child_link_keys(c.address, c.carers) k;

-- Whether another record that shares an address or a carer with this one is shielded.
CREATE FUNCTION shares_with_shielded(p_uid text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM child_links mine
        JOIN child_links other ON other.kind = mine.kind AND other.key = mine.key AND other.uid <> mine.uid
        JOIN children s ON s.uid = other.uid
        WHERE mine.uid = p_uid AND s.shield_request_id IS NOT NULL
    )
$$;

-- The same columns as before (so the functions returning its rows keep their type), one more at the end.
CREATE OR REPLACE VIEW practitioner_children AS
SELECT c.uid, c.given_name, c.family_name, c.aliases, c.gender, c.date_of_birth,
       (c.shield_request_id IS NOT NULL) AS shielded,
       CASE WHEN c.shield_request_id IS NULL AND NOT l.shared THEN c.address END AS address,
       CASE WHEN c.shield_request_id IS NULL AND NOT l.shared THEN c.carers END AS carers,
       CASE WHEN c.shield_request_id IS NULL THEN c.school END AS school,
       CASE WHEN c.shield_request_id IS NULL THEN c.gp_practice END AS gp_practice,
       CASE WHEN c.shield_request_id IS NULL THEN c.practitioners END AS practitioners,
       -- Address and carers withheld because a record sharing one of them is shielded.
       (c.shield_request_id IS NULL AND l.shared) AS withheld
FROM children c
CROSS JOIN LATERAL (SELECT shares_with_shielded(c.uid) AS shared) l;

-- ------------------------------------------------------------------------------- 2. reads by practitioners

CREATE FUNCTION practitioner_child(p_uid text) RETURNS SETOF practitioner_children
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT * FROM practitioner_children WHERE uid = p_uid
$$;

-- A name (given, family or an alias) and a date of birth, always; postcode, school and gender only narrow it,
-- and a hidden field never selects a shielded record nor one whose shared address or carer is withheld.
CREATE OR REPLACE FUNCTION search_children(
    p_given_name text, p_family_name text, p_date_of_birth date, p_gender text,
    p_postcode text, p_school text, p_limit integer
) RETURNS SETOF practitioner_children
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
SET plan_cache_mode = force_custom_plan
AS $$
BEGIN
    IF p_date_of_birth IS NULL OR (nullif(btrim(p_given_name), '') IS NULL AND nullif(btrim(p_family_name), '') IS NULL) THEN
        RAISE EXCEPTION 'a directory search names a name and a date of birth'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    SELECT v.*
    FROM children c JOIN practitioner_children v ON v.uid = c.uid
    WHERE c.date_of_birth = p_date_of_birth
      AND (nullif(btrim(p_given_name), '') IS NULL OR lower(c.given_name) = lower(btrim(p_given_name))
           OR EXISTS (SELECT 1 FROM unnest(c.aliases) a WHERE lower(a) = lower(btrim(p_given_name))))
      AND (nullif(btrim(p_family_name), '') IS NULL OR lower(c.family_name) = lower(btrim(p_family_name))
           OR EXISTS (SELECT 1 FROM unnest(c.aliases) a WHERE lower(a) = lower(btrim(p_family_name))))
      AND (p_gender IS NULL OR c.gender = p_gender)
      AND (p_postcode IS NULL OR (c.shield_request_id IS NULL AND NOT v.withheld AND
           upper(replace(c.address->>'postcode', ' ', '')) = upper(replace(p_postcode, ' ', ''))))
      AND (p_school IS NULL OR (c.shield_request_id IS NULL AND NOT v.withheld AND lower(c.school) = lower(p_school)))
    ORDER BY lower(c.family_name), lower(c.given_name), c.date_of_birth, c.uid
    LIMIT greatest(1, least(coalesce(p_limit, 21), 21));
END
$$;

REVOKE ALL ON practitioner_children FROM shielding_practitioner;
REVOKE EXECUTE ON FUNCTION address_line_key(jsonb), address_key(jsonb), carer_key(jsonb), child_link_keys(jsonb, jsonb),
    shares_with_shielded(text), children_keep_links(), practitioner_child(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION practitioner_child(text) TO shielding_practitioner, shielding_service;
GRANT EXECUTE ON FUNCTION address_line_key(jsonb), address_key(jsonb), carer_key(jsonb), child_link_keys(jsonb, jsonb),
    shares_with_shielded(text), children_keep_links() TO shielding_service;
GRANT SELECT, INSERT, DELETE ON child_links TO shielding_service;

-- A count of shielded rows must not sit in the catalogue: the whole column instead of its non-NULL part.
DROP INDEX IF EXISTS children_shield_request;
CREATE INDEX children_shield_request_all ON children (shield_request_id);

-- ------------------------------------------------------------------------------------- 3. rate of reads

CREATE TABLE directory_read_counts (
    name          text NOT NULL,
    window_start  timestamptz NOT NULL,
    reads         integer NOT NULL DEFAULT 1,
    PRIMARY KEY (name, window_start)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON directory_read_counts TO shielding_service;
