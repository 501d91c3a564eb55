"""What a worker needs in memory before it starts: imported once, by the workers' fork server.

See api.workers: every worker forked from that server starts with this code imported, instead
of importing FastAPI, Panel, Bokeh and the pages' views again for itself.
"""

from __future__ import annotations

from api import app  # noqa: F401 - imported for its side effect: the modules are loaded
from dashboard.app import import_views

import_views()
