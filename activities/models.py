"""The activities' inputs and results.

Each input is the store's command (`shielding.steps`) plus the `operation_key` the workflow builds from the
request id and the step, so a retried activity returns its first result instead of acting twice. The results
are the store's own reports. Field names are part of recorded histories: add with defaults, never rename.
"""

from __future__ import annotations

from shielding.steps import (
    AuditedStep,
    FormDocuments,
    LiftShield,
    RequestorMessage,
    ShieldChildren,
    ShieldResult,
    StepResult,
)


class ShieldRecordInput(ShieldChildren):
    operation_key: str


class LiftShieldInput(LiftShield):
    operation_key: str


class FormInput(FormDocuments):
    operation_key: str


class StepInput(AuditedStep):
    operation_key: str


class RequestorNotice(RequestorMessage):
    operation_key: str


__all__ = [
    "FormInput",
    "LiftShieldInput",
    "RequestorNotice",
    "ShieldRecordInput",
    "ShieldResult",
    "StepInput",
    "StepResult",
]
