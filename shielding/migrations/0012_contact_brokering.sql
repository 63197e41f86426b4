-- depends: 0011_notification_delivery
-- Brokering contact with a shielded child: a member of staff who found a shielded record asks the team to
-- reach the child's family or service for them; a manager takes the request, sees the hidden details (audited),
-- makes the contact and records the outcome. The purpose and the asker's contact details live only here (never
-- in Temporal, a log, a URL or a message).

CREATE TABLE contact_requests (
    contact_request_id text PRIMARY KEY CHECK (contact_request_id ~ '^CR-[A-Z0-9]{12}$'),
    child_uid          text NOT NULL REFERENCES children (uid),
    -- The shielding request that hid the record when contact was asked for.
    shield_request_id  text,
    urgency            text NOT NULL CHECK (urgency IN ('urgent', 'routine')),
    purpose            text NOT NULL CHECK (char_length(purpose) BETWEEN 1 AND 2000),
    contact_email      text CHECK (contact_email IS NULL OR (char_length(contact_email) <= 254
                                                             AND contact_email ~ '^[^@\s]+@[^@\s]+$')),
    contact_phone      text CHECK (contact_phone IS NULL OR contact_phone ~ '^\+?[0-9 ()-]{6,32}$'),
    asked_by           text NOT NULL,
    asked_at           timestamptz NOT NULL DEFAULT now(),
    reminders          integer NOT NULL DEFAULT 0,
    last_reminded_at   timestamptz,
    taken_by           text,
    taken_at           timestamptz,
    outcome            text CHECK (outcome IN ('passed-on', 'declined')),
    outcome_reason     text CHECK (outcome_reason IS NULL OR char_length(outcome_reason) BETWEEN 1 AND 2000),
    closed_by          text,
    closed_at          timestamptz,
    CHECK (contact_email IS NOT NULL OR contact_phone IS NOT NULL),
    CHECK ((taken_by IS NULL) = (taken_at IS NULL)),
    CHECK ((closed_at IS NULL) OR (taken_by IS NOT NULL AND outcome IS NOT NULL AND outcome_reason IS NOT NULL))
);
-- The managers' queue: open requests first.
CREATE INDEX contact_requests_open ON contact_requests (asked_at) WHERE closed_at IS NULL;
CREATE INDEX contact_requests_asked_by ON contact_requests (asked_by);

-- Which contact request a message is about (the message itself carries only its id and urgency).
ALTER TABLE notifications ADD COLUMN contact_request_id text;
CREATE INDEX notifications_contact_request ON notifications (contact_request_id) WHERE contact_request_id IS NOT NULL;

GRANT SELECT, INSERT, UPDATE ON contact_requests TO shielding_service;
