-- depends: 0003_audit_chain_order
-- search_children as plpgsql: a SECURITY DEFINER SQL function with a SET clause is never inlined, so its
-- query was planned once without the arguments and "$n IS NULL OR ..." forced a scan of every child
-- (~900 ms at 1M rows). RETURN QUERY with custom plans is planned with the values, so the date-of-birth index
-- is used. Same signature, same rules: a hidden field (postcode, school) only ever matches an unshielded record.

CREATE OR REPLACE FUNCTION search_children(
    p_given_name text, p_family_name text, p_date_of_birth date, p_gender text,
    p_postcode text, p_school text, p_limit integer
) RETURNS SETOF practitioner_children
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
SET plan_cache_mode = force_custom_plan
AS $$
BEGIN
    RETURN QUERY
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
    LIMIT greatest(1, least(coalesce(p_limit, 50), 500));
END
$$;
