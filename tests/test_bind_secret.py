"""A server on another address than loopback needs a secret (issue 18: "bind 127.0.0.1 by default,
a token required for any other bind"): `avatar serve` and `avatar live` refuse to start without
one, in one line, before any engine loads."""

from __future__ import annotations

import pytest

from avatar import cli
from avatar.core.errors import InputError
from avatar.playout.http_edge import is_loopback, require_secret_for_bind
from tests.conftest import SAMPLE_PORTRAIT


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_addresses_need_no_secret(host):
    assert is_loopback(host)
    require_secret_for_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.com", ""])
def test_any_other_bind_needs_a_secret(host):
    assert not is_loopback(host)
    with pytest.raises(InputError, match="reachable from other machines, so a secret is required"):
        require_secret_for_bind(host, None)
    require_secret_for_bind(host, "s3cret")


@pytest.mark.parametrize("command", ["serve", "live"])
def test_servers_refuse_an_open_bind_without_a_token_before_loading(command, capsys, monkeypatch):
    from avatar.engines import live_set

    monkeypatch.delenv("AVATAR_TOKEN", raising=False)
    monkeypatch.setattr(live_set.LiveEngines, "load", lambda *a, **k: pytest.fail("engines loaded"))
    code = cli.main([command, "--photo", str(SAMPLE_PORTRAIT), "--host", "0.0.0.0"])
    error = capsys.readouterr().err
    assert code == 2
    assert "--host 0.0.0.0 is reachable from other machines" in error and "--token" in error
    assert "Traceback" not in error


def test_posts_from_another_sites_page_are_refused_on_both_servers():
    """A page on another site must not drive the avatar through its visitor's browser (issue 18:
    Origin checks on state-changing browser requests); same-site pages and non-browser clients
    are judged by the token as before."""
    import asyncio

    from tests.support.edge_servers import TOKEN, broadcast_server, live_server, served

    async def status(client, method, url, **headers) -> int:
        headers.setdefault("Authorization", f"Bearer {TOKEN}")
        async with client.request(method, url, data=b"{}", headers=headers) as response:
            return response.status

    async def check(app, post_path: str) -> None:
        async with served(app) as (client, url):
            own = url  # what a page served by this server sends as its Origin
            assert await status(client, "POST", url + post_path, Origin="https://evil.example") == 403
            assert await status(client, "POST", url + post_path, Origin="null") == 403
            assert await status(client, "POST", url + post_path, Origin=own) not in (401, 403)
            assert await status(client, "POST", url + post_path) not in (401, 403)  # no Origin: curl, SDKs
            assert await status(client, "GET", url + "/health", Origin="https://evil.example") == 200
            no_token = {"Authorization": "", "Origin": own}
            assert await status(client, "POST", url + post_path, **no_token) == 401

    asyncio.run(check(live_server().app(), "/offer"))
    asyncio.run(check(broadcast_server().app(), "/api/say"))
