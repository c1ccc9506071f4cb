"""Development mode: a local ES384 key in the data directory, trusted only in dev mode, and
`cds token` printing tokens the service accepts."""

from __future__ import annotations

import stat

import jwt
import pytest

from cds.auth import Authenticator, AuthError, mint_dev_token
from cds.auth.devkeys import DEV_ISSUER, dev_key_path
from cds.cli import main
from cds.runtime.settings import Settings

pytestmark = pytest.mark.anyio

URL = "http://127.0.0.1:8080/cds-services/deterioration"


async def test_dev_token_accepted_only_in_dev_mode(tmp_path):
    dev = Settings(dev=True, data_dir=tmp_path)
    auth = Authenticator(dev)
    await auth.start()
    assert "DEVELOPMENT MODE" in auth.startup_message()
    token = mint_dev_token(dev, URL)
    caller = await auth.authenticate(f"Bearer {token}", URL)
    assert caller.iss == DEV_ISSUER
    assert caller.allows_fhir_server("http://localhost:8103/fhir")
    await auth.close()

    path = dev_key_path(dev)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key_bytes = path.read_bytes()
    Authenticator(dev)  # a restart reuses the key
    assert path.read_bytes() == key_bytes

    prod = Authenticator(Settings(dev=False, data_dir=tmp_path))
    with pytest.raises(AuthError) as exc:
        await prod.authenticate(f"Bearer {mint_dev_token(dev, URL)}", URL)
    assert exc.value.check == "no-trusted-clients"


async def test_dev_token_claims(tmp_path):
    settings = Settings(dev=True, data_dir=tmp_path)
    token = mint_dev_token(settings, URL, tenant="t")
    header = jwt.get_unverified_header(token)
    body = jwt.decode(token, options={"verify_signature": False})
    assert header["alg"] == "ES384" and header["kid"] and header["typ"] == "JWT"
    assert body["iss"] == DEV_ISSUER and body["aud"] == URL and body["tenant"] == "t"
    assert body["exp"] - body["iat"] == 300 and body["jti"] and body["sub"]


async def test_cds_token_command(tmp_path, capsys):
    assert main(["token", "--aud", URL, "--data-dir", str(tmp_path)]) == 0
    token = capsys.readouterr().out.strip()
    auth = Authenticator(Settings(dev=True, data_dir=tmp_path))
    caller = await auth.authenticate(f"Bearer {token}", URL)
    assert caller.iss == DEV_ISSUER
    with pytest.raises(AuthError) as exc:  # the token is for that exact URL only
        await auth.authenticate(f"Bearer {token}", URL.replace("deterioration", "care-gaps"))
    assert exc.value.check == "aud-mismatch"
    await auth.close()


def test_cds_token_rejects_bad_aud(tmp_path, capsys):
    assert main(["token", "--aud", "cds-services/x", "--data-dir", str(tmp_path)]) == 2
    assert "--aud" in capsys.readouterr().err
