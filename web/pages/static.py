"""The pages' static files at /assets/, straight from the installed npm packages and the built stylesheet.

    /assets/application.css, /assets/application.mjs   web/frontend/build (`python -m web.assets`)
    /assets/images/..., /assets/fonts/...               GOV.UK Frontend's assets, then MOJ Frontend's images
    /assets/govuk/govuk-frontend.min.js                 GOV.UK Frontend's dist/govuk
    /assets/moj/moj-frontend.min.js                     MOJ Frontend's moj

Nothing is fetched or built here: when the assets are missing the service still starts (the JSON API needs
none of them), the pages come without styles, and a warning says to run `python -m web.assets`. Responses get
the same security headers as every other (`Cache-Control: no-store` included).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from shielding.log import get_logger
from web import assets

log = get_logger(__name__)


def _static(first: Path, *more: Path) -> StaticFiles:
    """Files looked up in each directory in turn."""
    files = StaticFiles(directory=first, check_dir=False)
    files.all_directories = [first, *more]
    return files


def mount_assets(app: FastAPI) -> None:
    try:
        assets.check_frontend_installed(production=True)
    except assets.FrontendNotInstalled as err:
        log.warning("the pages' assets are not ready", problem=str(err))
    # The most specific prefixes first: a mount matches every path under it.
    app.mount("/assets/govuk", _static(assets.GOVUK_FRONTEND_DIR), name="assets-govuk")
    app.mount("/assets/moj", _static(assets.MOJ_FRONTEND_DIR), name="assets-moj")
    app.mount("/assets", _static(assets.BUILD_DIR, assets.GOVUK_ASSETS_DIR, assets.MOJ_ASSETS_DIR), name="assets")
