"""Delivering the outbox: who a message goes to (shielding.store.outbox), the senders (GOV.UK Notify in
production, SMTP in development) and how each failure is classed (retry later, or never).

The relay itself is Temporal work: `workflows.notifications` (a Schedule starts NotificationDispatchWorkflow,
which starts one NotificationDeliveryWorkflow per message) and `activities.notifications`.
"""

from shielding.delivery.senders import (
    FailureCode,
    NotifySender,
    NotPossible,
    PermanentFailure,
    Sender,
    SmtpSender,
    TemporaryFailure,
    failure_reason,
    notify_templates,
    sender_from_settings,
)

__all__ = [
    "FailureCode",
    "NotPossible",
    "NotifySender",
    "PermanentFailure",
    "Sender",
    "SmtpSender",
    "TemporaryFailure",
    "failure_reason",
    "notify_templates",
    "sender_from_settings",
]
