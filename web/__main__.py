"""`python -m web`: the web service on the settings in the environment (how `shielding dev` starts it)."""

from __future__ import annotations

from shielding.settings import get_settings
from web.server import serve

if __name__ == "__main__":
    serve(get_settings())
