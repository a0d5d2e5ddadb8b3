"""The Slicebox service: an HTTP API (FastAPI) over the store, for tokens of teams.

``create_app`` builds the app; ``server.serve`` runs it with uvicorn beside a controller.
Imported only by what serves or tests the API (``import slicebox`` does not import it).
"""

from slicebox.service.app import create_app

__all__ = ["create_app"]
