"""The pages' links to the Temporal Web UI: where the setting says, `shielding dev`'s own UI, or none."""

from __future__ import annotations

from shielding.settings import Settings
from web.pages.request_views import temporal_ui_link
from web.pages.reviews import temporal_ui_url


def test_development_links_to_the_dev_stacks_own_ui() -> None:
    settings = Settings(environment="development", dev_ui_port=9233)
    assert temporal_ui_link(settings, "SR-ABC") == "http://localhost:9233/namespaces/default/workflows/SR-ABC"


def test_production_links_only_where_the_ui_address_is_set() -> None:
    assert temporal_ui_link(Settings(environment="production"), "SR-ABC") is None
    assert temporal_ui_url(Settings(environment="production"), ()) is None
    settings = Settings(environment="production", temporal_ui_url="https://temporal-ui.example.gov.uk/")
    assert temporal_ui_link(settings, "SR-ABC") == (
        "https://temporal-ui.example.gov.uk/namespaces/default/workflows/SR-ABC"
    )
    queue = temporal_ui_url(settings, ())
    assert queue is not None and queue.startswith(
        "https://temporal-ui.example.gov.uk/namespaces/default/workflows?query="
    )
    assert "ShieldingStage" in queue
