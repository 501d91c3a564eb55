"""Panel's /components/ files (a page's CSS and JS) for modules the pages have loaded.

Panel's own route imports whatever module the URL names, so a request could run any module's
import-time code, and a name that is not a module, or a listed file that is missing, ended in
a 500. This route is included before the pages, so it answers first: it looks only at
modules already imported, and every error keeps its own status (404, or Panel's 400/403).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import cast

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

router = APIRouter(include_in_schema=False)


# Panel's COMPONENT_PATH; Panel is imported on the first request, not by API-only processes.
@router.get("/components/{path:path}")
def component_file(path: str) -> FileResponse:
    """Send a file a loaded component lists among its resources."""
    from panel.io.server import ComponentResourceHandler

    module = path.split("/", 1)[0]
    # Every component a page shows was imported to build the page; anything else is not one.
    if sys.modules.get(module) is None:
        raise HTTPException(404, f"no component module named {module!r}")
    # Panel's parser reads only class attributes, so it runs without a Tornado request (as
    # Panel's FastAPI route does); it raises Tornado's HTTPError, which api/problems.py
    # answers with its status.
    handler = cast(ComponentResourceHandler, ComponentResourceHandler)
    resolved = Path(ComponentResourceHandler.parse_url_path(handler, path))
    if not resolved.is_file():
        raise HTTPException(404, "the component lists this file but it is not there")
    return FileResponse(resolved)
