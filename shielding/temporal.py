"""How the service talks to Temporal: the data converter, search attributes and client connection."""

from __future__ import annotations

import dataclasses

from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes

from shielding.settings import Settings

STAGE_ATTRIBUTE = SearchAttributeKey.for_keyword("ShieldingStage")
FORM_DUE_AT_ATTRIBUTE = SearchAttributeKey.for_datetime("FormDueAt")
NEXT_REVIEW_AT_ATTRIBUTE = SearchAttributeKey.for_datetime("NextReviewAt")

# Name=Type pairs as the dev server and `temporal operator search-attribute create` take them.
SEARCH_ATTRIBUTES = {"ShieldingStage": "Keyword", "FormDueAt": "Datetime", "NextReviewAt": "Datetime"}


def data_converter(settings: Settings | None = None) -> DataConverter:
    """Pydantic payloads, encrypted by the payload codec when keys are configured, with failure messages
    moved into the (encrypted) encoded attributes so no exception text reaches the server in clear."""
    from shielding.codec import codec_from_settings

    codec = codec_from_settings(settings) if settings is not None else None
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


async def connect(settings: Settings) -> Client:
    return await Client.connect(
        settings.resolved_temporal_address(),
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
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
