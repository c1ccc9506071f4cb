"""The second baseline: the bare endpoint (benchmarks/bare_app.py) behind the service's own JWT gate.

The least a secure CDS endpoint must do: verify the caller's ES384 JWT (cds.auth's Authenticator
mounted through the same AuthGate middleware: same library, same key, same claims checks) and
record its `jti` in the same replay store (SharedReplayCache on a SQLite file of the kind the
service uses), then parse the JSON and answer {"cards": []}.

    CDS_DATA_DIR=<dir holding dev-key.pem> uvicorn benchmarks.bare_auth_app:app

Development mode, so the issuer `cds-dev` is trusted with the key in the data directory;
benchmarks/hooks_load.py copies the service's key there so one set of tokens serves both.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from benchmarks.bare_app import hook
from cds.auth import Authenticator
from cds.auth.replay_store import SharedReplayCache
from cds.runtime.metrics import Metrics
from cds.runtime.settings import load_settings
from cds.web.authgate import AuthGate


def create_app(data_dir: Path) -> Starlette:
    settings = load_settings(dev=True, data_dir=data_dir)
    metrics = Metrics()
    authenticator = Authenticator(
        settings, replay=SharedReplayCache(settings, on_fallback=metrics.replay_fallback.inc)
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await authenticator.start()
        try:
            yield
        finally:
            await authenticator.close()

    return Starlette(
        routes=[Route("/cds-services/{service_id}", hook, methods=["POST"])],
        middleware=[Middleware(AuthGate, authenticator=authenticator, metrics=metrics, public_base_url=None)],
        lifespan=lifespan,
    )


# Without CDS_DATA_DIR: a fresh directory (a new development key).
app = create_app(Path(os.environ.get("CDS_DATA_DIR") or tempfile.mkdtemp(prefix="cds-bare-auth-")))
