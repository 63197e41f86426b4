-- depends: 0013_access_log
-- A search that forgives spelling, and still infers nothing.
--
-- The date of birth drives the query (exact, or within a tolerance of a few days, through a btree whose leading
-- column is the date of birth); the names only score the ~1,700 candidates a date of birth yields at national
-- scale. A trigram GIN index is never combined with the date-of-birth btree (`%` in the WHERE clause makes the
-- planner BitmapAnd the two: ~50x slower, /work/shared/SEARCH-NOTES.md): similarity is computed, not filtered on.
--
-- Each name is normalised once, in stored generated columns: lower case, diacritics folded (unaccent),
-- apostrophes dropped, every other non-letter a space (so a hyphenated or double-barrelled family name is two
-- tokens). Phonetic keys per token: double metaphone (primary and alternate, after folding mac -> mc on the key
-- only) and Daitch-Mokotoff codes ('D' + code), which catch mohammed/muhammad (0.20 by trigrams alone) and
-- wisniewski/wishnevsky. fuzzystrmatch's functions mishandle multibyte UTF-8, hence the normalising first.
--
-- The shielding rule holds exactly as for the exact search: the score and the order use names and date of birth
-- only (fields a practitioner is shown for every record); gender narrows; a hidden field (postcode, school) only
-- ever matches a record that is neither shielded nor withheld, so a search naming one returns no shielded child.

CREATE FUNCTION name_norm(p_name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
SET search_path = public, pg_temp
RETURN btrim(regexp_replace(
    regexp_replace(lower(public.unaccent('public.unaccent'::regdictionary, p_name)), '[''’`]', '', 'g'),
    '[^a-z]+', ' ', 'g'));

-- Phonetic keys of every token of at least two letters: {dmetaphone, dmetaphone_alt, 'D' || daitch_mokotoff}.
CREATE FUNCTION name_keys(p_name text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
SET search_path = public, pg_temp
BEGIN ATOMIC
    SELECT coalesce(array_agg(DISTINCT k ORDER BY k) FILTER (WHERE k IS NOT NULL AND k <> ''), '{}')
    FROM unnest(string_to_array(public.name_norm(p_name), ' ')) AS t(token)
    CROSS JOIN LATERAL (SELECT regexp_replace(t.token, '^mac', 'mc') AS folded) f
    CROSS JOIN LATERAL (
        SELECT public.dmetaphone(f.folded) AS k
        UNION ALL SELECT public.dmetaphone_alt(f.folded)
        UNION ALL SELECT 'D' || d FROM unnest(public.daitch_mokotoff(t.token)) AS d
    ) keys
    WHERE length(t.token) >= 2;
END;

-- A name and the aliases as one text (array_to_string is only STABLE; for text elements it is immutable).
CREATE FUNCTION name_with_aliases(p_name text, p_aliases text[]) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = public, pg_temp
RETURN concat_ws(' ', p_name, array_to_string(p_aliases, ' '));

ALTER TABLE children
    ADD COLUMN given_norm text GENERATED ALWAYS AS (name_norm(given_name)) STORED,
    ADD COLUMN family_norm text GENERATED ALWAYS AS (name_norm(family_name)) STORED,
    ADD COLUMN aliases_norm text GENERATED ALWAYS AS (name_norm(name_with_aliases(NULL, aliases))) STORED,
    ADD COLUMN given_keys text[] GENERATED ALWAYS AS (name_keys(name_with_aliases(given_name, aliases))) STORED,
    ADD COLUMN family_keys text[] GENERATED ALWAYS AS (name_keys(name_with_aliases(family_name, aliases))) STORED;

-- Everything the scoring reads, so a date of birth (or a few days of them) is one index-only range scan.
CREATE INDEX children_dob_names ON children (date_of_birth, family_norm, given_norm)
    INCLUDE (uid, gender, aliases_norm, given_keys, family_keys);

-- One name's score against one record: the best of trigram similarity with the name, with one part of it
-- (word_similarity: one part of a double-barrelled name), with an alias, a phonetic key in common (0.6), and
-- the edit distance (a keyboard slip in a short name, where trigrams say little: 1 - edits/length, from 0.5).
CREATE FUNCTION name_score(p_query text, p_query_keys text[], p_norm text, p_aliases text, p_keys text[])
RETURNS real
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = public, pg_temp
RETURN CASE WHEN p_query IS NULL OR p_query = '' THEN NULL ELSE greatest(
    similarity(p_query, p_norm),
    word_similarity(p_query, p_norm),
    CASE WHEN p_aliases <> '' THEN word_similarity(p_query, p_aliases) ELSE 0 END,
    CASE WHEN p_keys && p_query_keys THEN 0.6 ELSE 0 END,
    CASE WHEN levenshtein_less_equal(p_query, p_norm, 2) <= 2
         AND 1 - levenshtein_less_equal(p_query, p_norm, 2)::real / greatest(length(p_query), length(p_norm)) >= 0.5
         THEN 1 - levenshtein_less_equal(p_query, p_norm, 2)::real / greatest(length(p_query), length(p_norm))
         ELSE 0 END
) END;

-- Ranked, best first: the mean of the names' scores, each given name at least 0.3 (so a date of birth with
-- a name matching nothing lists no one); ties by nearer date of birth, then name and uid. At most 51 rows
-- (a page of 50 and whether there are more), never a total. The tolerance is capped at 31 days.
CREATE FUNCTION search_children_fuzzy(
    p_given_name text, p_family_name text, p_date_of_birth date, p_dob_tolerance_days integer, p_gender text,
    p_postcode text, p_school text, p_limit integer
) RETURNS TABLE (
    uid text, given_name text, family_name text, aliases text[], gender text, date_of_birth date,
    shielded boolean, address jsonb, carers jsonb, school text, gp_practice text, practitioners jsonb,
    withheld boolean, score real
)
LANGUAGE plpgsql STABLE SECURITY DEFINER
-- No force_custom_plan here (unlike search_children): the one index condition is a date-of-birth range, which
-- a generic plan serves with the same index-only scan, and planning the view join on every call cost 2.7 ms of
-- 4.4 (measured at 20,000 rows).
SET search_path = public, pg_temp
AS $$
DECLARE
    q_given text := nullif(name_norm(p_given_name), '');
    q_family text := nullif(name_norm(p_family_name), '');
    q_given_keys text[] := coalesce(name_keys(p_given_name), '{}');
    q_family_keys text[] := coalesce(name_keys(p_family_name), '{}');
    tolerance integer := coalesce(p_dob_tolerance_days, 0);
BEGIN
    IF p_date_of_birth IS NULL
       OR (nullif(btrim(p_given_name), '') IS NULL AND nullif(btrim(p_family_name), '') IS NULL) THEN
        RAISE EXCEPTION 'a directory search names a name and a date of birth'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF q_given IS NULL AND q_family IS NULL THEN
        RETURN;  -- names with no letters in them ('0000'): nothing to score, so no one
    END IF;
    IF tolerance < 0 OR tolerance > 31 THEN
        RAISE EXCEPTION 'a date-of-birth tolerance is 0 to 31 days' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    WITH scored AS MATERIALIZED (
        SELECT c.uid AS s_uid, c.date_of_birth AS s_dob, c.family_norm AS s_family, c.given_norm AS s_given,
               name_score(q_given, q_given_keys, c.given_norm, c.aliases_norm, c.given_keys) AS g,
               name_score(q_family, q_family_keys, c.family_norm, c.aliases_norm, c.family_keys) AS f
        FROM children c
        WHERE c.date_of_birth BETWEEN p_date_of_birth - tolerance AND p_date_of_birth + tolerance
          AND (p_gender IS NULL OR c.gender = p_gender)
    ), ranked AS (
        SELECT s.*, ((coalesce(s.g, 0) + coalesce(s.f, 0))
                     / ((s.g IS NOT NULL)::int + (s.f IS NOT NULL)::int))::real AS s_score
        FROM scored s
        WHERE (s.g IS NULL OR s.g >= 0.3) AND (s.f IS NULL OR s.f >= 0.3)
    ), page AS (
        -- Without a postcode or school the page is cut here, so the view (which asks, for each record, whether
        -- it shares an address with a shielded one) runs for at most a page; LIMIT NULL is no limit.
        SELECT r.* FROM ranked r
        ORDER BY r.s_score DESC, abs(r.s_dob - p_date_of_birth), r.s_family, r.s_given, r.s_uid
        LIMIT CASE WHEN p_postcode IS NULL AND p_school IS NULL
                   THEN greatest(1, least(coalesce(p_limit, 51), 51)) END
    )
    SELECT v.uid, v.given_name, v.family_name, v.aliases, v.gender, v.date_of_birth, v.shielded, v.address,
           v.carers, v.school, v.gp_practice, v.practitioners, v.withheld, r.s_score
    FROM page r
    JOIN children c ON c.uid = r.s_uid
    JOIN practitioner_children v ON v.uid = r.s_uid
    WHERE (p_postcode IS NULL OR (c.shield_request_id IS NULL AND NOT v.withheld AND
           upper(replace(c.address->>'postcode', ' ', '')) = upper(replace(p_postcode, ' ', ''))))
      AND (p_school IS NULL OR (c.shield_request_id IS NULL AND NOT v.withheld AND lower(c.school) = lower(p_school)))
    ORDER BY r.s_score DESC, abs(r.s_dob - p_date_of_birth), r.s_family, r.s_given, r.s_uid
    LIMIT greatest(1, least(coalesce(p_limit, 51), 51));
END
$$;

REVOKE EXECUTE ON FUNCTION name_norm(text), name_keys(text), name_with_aliases(text, text[]), name_score(text, text[], text, text, text[]),
    search_children_fuzzy(text, text, date, integer, text, text, text, integer) FROM PUBLIC;
-- The service writes children (the generated columns call the normalising functions as the writer).
GRANT EXECUTE ON FUNCTION name_norm(text), name_keys(text), name_with_aliases(text, text[]), name_score(text, text[], text, text, text[])
    TO shielding_service;
GRANT EXECUTE ON FUNCTION search_children_fuzzy(text, text, date, integer, text, text, text, integer)
    TO shielding_practitioner, shielding_service;
