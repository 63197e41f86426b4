-- depends: 0010_operations_role_and_second_approval
-- Delivering the outbox (shielding.delivery): staff addresses for messages, each message's kind and status,
-- and one row per recipient so each recipient is sent a message exactly once.
--
-- Existing rows stay valid: every new column is nullable or has a default, and the recipient kinds only grow.

-- A staff member's address for messages (NULL: they are sent none).
ALTER TABLE accounts ADD COLUMN email text
    CHECK (email IS NULL OR (char_length(email) <= 254 AND email ~ '^[^@\s]+@[^@\s]+$'));
ALTER TABLE accounts ADD COLUMN phone text
    CHECK (phone IS NULL OR phone ~ '^\+?[0-9 ()-]{6,32}$');

-- What kind of message (the Notify template it is sent with) and how far its delivery got.
--   dispatched_at: the relay started its delivery workflow (notification-<id>);
--   sent_at:       every recipient was sent it (or it could not go by any channel there is: see deliveries);
--   failed_at, failure: it can never be delivered, in plain words without an address or a child's details.
ALTER TABLE notifications ADD COLUMN template text NOT NULL DEFAULT 'generic'
    CHECK (template ~ '^[a-z0-9][a-z0-9-]{0,63}$');
ALTER TABLE notifications ADD COLUMN dispatched_at timestamptz;
ALTER TABLE notifications ADD COLUMN failed_at timestamptz;
ALTER TABLE notifications ADD COLUMN failure text CHECK (failure IS NULL OR char_length(failure) <= 300);

-- A practitioner's message goes to the email or phone they gave (the recipient column).
ALTER TABLE notifications DROP CONSTRAINT IF EXISTS notifications_recipient_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_recipient_kind_check
    CHECK (recipient_kind IN ('requestor', 'reviewers', 'managers', 'practitioner'));

-- What the relay has not started yet.
CREATE INDEX notifications_undispatched ON notifications (notification_id)
    WHERE dispatched_at IS NULL AND sent_at IS NULL AND failed_at IS NULL;

-- One row per recipient of a message, written (attempted_at) before it is handed to the provider, so a
-- delivery retried after a crash knows to ask the provider by reference instead of sending again.
--   reference:    ours, <notification_id>-<n>, given to the provider (Notify's reference, SMTP's Message-ID);
--   provider_id:  the provider's own id for the message, once it accepted it;
--   not_possible: why it cannot go to this recipient by any channel this service has (an SMS without Notify).
CREATE TABLE notification_deliveries (
    notification_id  bigint NOT NULL REFERENCES notifications (notification_id),
    recipient        text NOT NULL,
    channel          text NOT NULL CHECK (channel IN ('email', 'sms')),
    provider         text NOT NULL CHECK (provider IN ('notify', 'smtp')),
    reference        text NOT NULL UNIQUE CHECK (reference ~ '^[0-9]+-[0-9]+$'),
    provider_id      text,
    attempted_at     timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    not_possible     text CHECK (not_possible IS NULL OR char_length(not_possible) <= 300),
    PRIMARY KEY (notification_id, recipient)
);

GRANT SELECT, INSERT, UPDATE ON notification_deliveries TO shielding_service;
