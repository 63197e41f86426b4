"""What the service layer raises to a front end: a refusal worded for the person, or an unconfirmed intake."""

from __future__ import annotations


class Refusal(Exception):
    """A request the service will not carry out; the message is for the person at the keyboard."""


class IntakeTimeout(TimeoutError):
    """An intake not confirmed within the service's bound; its lifecycle may still complete it."""
