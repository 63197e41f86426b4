"""The two senders: GOV.UK Notify (production: email and SMS, templates by message kind) and SMTP (development:
email only). Each raises one of three errors, and never with an address, a subject or a body in it (the error
ends up in Temporal's history and in logs):

- `TemporaryFailure`: try again later (the provider is down, slow or rate-limiting);
- `PermanentFailure`: it will never work for this recipient or this message (Notify 400/403; SMTP 5xx);
- `NotPossible`: no channel here can reach this recipient (a phone number without Notify). Recorded on the
  recipient's delivery, not treated as a failure: nobody is paged for a development stack without SMS.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from enum import StrEnum
from typing import Any, Protocol

from shielding import messages
from shielding.log import get_logger
from shielding.settings import ConfigurationError, Settings
from shielding.store.outbox import Channel, Delivery, Outgoing

SEND_TIMEOUT_SECONDS = 20.0
log = get_logger(__name__)


class FailureCode(StrEnum):
    """Why a message can never be delivered; the sentence managers read is `failure_reason(code)`."""

    NO_RECIPIENT = "no-recipient"
    REFUSED = "refused"
    PROVIDER_REFUSED = "provider-refused"
    TIMED_OUT = "timed-out"


_REASONS = {
    FailureCode.NO_RECIPIENT: messages.DELIVERY_NO_RECIPIENT,
    FailureCode.REFUSED: messages.DELIVERY_REFUSED,
    FailureCode.PROVIDER_REFUSED: messages.DELIVERY_PROVIDER_REFUSED,
    FailureCode.TIMED_OUT: messages.DELIVERY_TIMED_OUT,
}


def failure_reason(code: FailureCode) -> str:
    return _REASONS[code]


class DeliveryError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TemporaryFailure(DeliveryError):
    pass


class PermanentFailure(DeliveryError):
    def __init__(self, code: FailureCode) -> None:
        super().__init__(failure_reason(code))
        self.code = code


class NotPossible(DeliveryError):
    pass


class Sender(Protocol):
    provider: str

    async def find(self, delivery: Delivery) -> str | None:
        """The provider's id for a message it already accepted under this delivery's reference, if it can tell."""

    async def send(self, message: Outgoing, delivery: Delivery) -> str | None:
        """Hand the message over for this recipient; the provider's id for it (None: the provider gives none)."""


# ---------------------------------------------------------------------------------------------- SMTP


class SmtpSender:
    """Plain SMTP (stdlib smtplib, in a thread): one connection per message; the Message-ID is our reference, so
    a receiving system can drop the copy a crash between the send and its record might cause."""

    provider = "smtp"

    def __init__(self, host: str, port: int, from_address: str, *, starttls: bool = False) -> None:
        self.host, self.port, self.from_address, self.starttls = host, port, from_address, starttls

    async def find(self, delivery: Delivery) -> str | None:
        return None  # SMTP cannot be asked what it accepted

    async def send(self, message: Outgoing, delivery: Delivery) -> str | None:
        if delivery.channel != Channel.EMAIL:
            raise NotPossible(messages.SMS_NOT_POSSIBLE)
        email = EmailMessage()
        email["From"] = self.from_address
        email["To"] = delivery.recipient
        email["Subject"] = message.subject
        email["Date"] = formatdate(localtime=False)
        email["Message-ID"] = f"<{delivery.reference}@shielding>"
        email["X-Shielding-Reference"] = delivery.reference
        email["X-Shielding-Template"] = message.template
        email.set_content(message.body)
        await asyncio.to_thread(self._send, email)
        return email["Message-ID"]

    def _send(self, email: EmailMessage) -> None:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=SEND_TIMEOUT_SECONDS) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                smtp.send_message(email)
        except smtplib.SMTPRecipientsRefused as refused:
            codes = [code for code, _ in refused.recipients.values()]
            if codes and all(code >= 500 for code in codes):
                raise PermanentFailure(FailureCode.REFUSED) from None
            raise TemporaryFailure("the SMTP server refused the recipient for now") from None
        except smtplib.SMTPResponseException as response:
            if response.smtp_code >= 500:
                raise PermanentFailure(FailureCode.PROVIDER_REFUSED) from None
            raise TemporaryFailure(f"the SMTP server answered {response.smtp_code}") from None
        except (smtplib.SMTPException, OSError):
            raise TemporaryFailure("the SMTP server could not be reached") from None


# -------------------------------------------------------------------------------------------- Notify


def notify_templates(settings: Settings) -> dict[str, str]:
    """`SHIELDING_NOTIFY_TEMPLATES`: {"kind": "template-id", ...}; "generic" is required (every other kind)."""
    try:
        loaded = json.loads(settings.notify_templates or "{}")
    except ValueError:
        raise ConfigurationError('SHIELDING_NOTIFY_TEMPLATES must be JSON: {"generic": "<template id>", ...}') from None
    if not isinstance(loaded, dict) or not all(isinstance(v, str) and v for v in loaded.values()):
        raise ConfigurationError("SHIELDING_NOTIFY_TEMPLATES must map message kinds to template ids")
    if "generic" not in loaded:
        raise ConfigurationError('SHIELDING_NOTIFY_TEMPLATES needs a "generic" template for every other kind')
    return {str(k): str(v) for k, v in loaded.items()}


def _names_recipient(error: Any) -> bool:
    """Notify's 400 answer names the field it refused: the address or number (else the template, the key...)."""
    text = json.dumps(error.message) if not isinstance(error.message, str) else error.message
    return "email_address" in text or "phone_number" in text or "recipient" in text.lower()


class NotifySender:
    """GOV.UK Notify through its client (`notifications-python-client`, in a thread). Our reference goes with
    every message, so after a crash `find` asks Notify whether it already has it instead of sending twice."""

    provider = "notify"

    def __init__(self, api_key: str, base_url: str, templates: dict[str, str]) -> None:
        from notifications_python_client.notifications import NotificationsAPIClient

        self.templates = templates
        self.client = NotificationsAPIClient(api_key, base_url=base_url, timeout=SEND_TIMEOUT_SECONDS)

    def template_for(self, kind: str) -> str:
        return self.templates.get(kind) or self.templates["generic"]

    @staticmethod
    def personalisation(message: Outgoing) -> dict[str, str]:
        return {"subject": message.subject, "body": message.body, "request_id": message.request_id or ""}

    async def find(self, delivery: Delivery) -> str | None:
        answer = await asyncio.to_thread(self._call, self.client.get_all_notifications, reference=delivery.reference)
        found = [n for n in answer.get("notifications", []) if n.get("reference") == delivery.reference]
        return str(found[0]["id"]) if found else None

    async def send(self, message: Outgoing, delivery: Delivery) -> str | None:
        arguments: dict[str, Any] = {
            "template_id": self.template_for(message.template),
            "personalisation": self.personalisation(message),
            "reference": delivery.reference,
        }
        if delivery.channel == Channel.EMAIL:
            answer = await asyncio.to_thread(
                self._call, self.client.send_email_notification, email_address=delivery.recipient, **arguments
            )
        else:
            answer = await asyncio.to_thread(
                self._call, self.client.send_sms_notification, phone_number=delivery.recipient, **arguments
            )
        return str(answer.get("id")) if answer.get("id") else None

    @staticmethod
    def _call(method: Any, **kwargs: Any) -> dict[str, Any]:
        from notifications_python_client.errors import APIError, TokenError

        try:
            answer = method(**kwargs)
        except APIError as error:
            status = error.status_code
            if status == 400:
                code = FailureCode.REFUSED if _names_recipient(error) else FailureCode.PROVIDER_REFUSED
                raise PermanentFailure(code) from None
            if status in (401, 403):
                raise PermanentFailure(FailureCode.PROVIDER_REFUSED) from None
            raise TemporaryFailure(f"GOV.UK Notify answered {status}") from None
        except TokenError:
            raise PermanentFailure(FailureCode.PROVIDER_REFUSED) from None
        except Exception:  # noqa: BLE001 (requests' own errors: the connection, a timeout)
            raise TemporaryFailure("GOV.UK Notify could not be reached") from None
        return answer if isinstance(answer, dict) else {}


def sender_from_settings(settings: Settings) -> Sender:
    """Notify when an API key is set; otherwise SMTP (`shielding dev` runs a local sink for it)."""
    if settings.notify_api_key:
        return NotifySender(settings.notify_api_key, settings.notify_base_url, notify_templates(settings))
    # docker-compose.yml passes SHIELDING_SMTP_HOST empty when none is given: the same as not set.
    smtp_host = settings.smtp_host.strip()
    if settings.environment == "production" and ("smtp_host" not in settings.model_fields_set or not smtp_host):
        # The development default (a sink on this machine): every message would wait 3 days, then fail (each
        # shown to managers as failed). Said loudly at start rather than refusing to run the rest of the worker.
        log.warning("no message provider: set SHIELDING_NOTIFY_API_KEY (GOV.UK Notify) or SHIELDING_SMTP_HOST")
    default_host = Settings.model_fields["smtp_host"].default
    return SmtpSender(
        smtp_host or default_host, settings.smtp_port, settings.smtp_from, starttls=settings.smtp_starttls
    )
