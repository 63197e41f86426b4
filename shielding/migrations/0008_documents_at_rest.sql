-- depends: 0006_accounts_and_sessions
-- Supporting documents at rest: encrypted (AES-256-GCM under the service's encryption keys, shielding.store.
-- documents), and their content removed once the request has been closed longer than the retention period.
--
-- key_id names the key a document's content is sealed under (NULL: a document stored in clear before this
-- migration; the retention job seals those on its next run). A removed document keeps its row (name, size,
-- digest) with the time its content was removed; content is NULL exactly when content_deleted_at is set.

ALTER TABLE form_documents
    ALTER COLUMN content DROP NOT NULL,
    ADD COLUMN key_id text,
    ADD COLUMN content_deleted_at timestamptz,
    ADD CONSTRAINT form_documents_content_or_removed CHECK ((content IS NULL) = (content_deleted_at IS NOT NULL));

-- The retention job's and the sealing job's lookups.
CREATE INDEX form_documents_holding_content ON form_documents (request_id) WHERE content IS NOT NULL;
CREATE INDEX form_documents_in_clear ON form_documents (document_id) WHERE content IS NOT NULL AND key_id IS NULL;
