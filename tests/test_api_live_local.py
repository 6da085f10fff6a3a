"""`POST /v1/sessions` without Ray: the API's own live worker (a LiveServer in its process) takes
the session, the client talks and gets a spoken reply; a second session finds the worker full."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import numpy as np
import pytest

from tests.conftest import SAMPLE_PORTRAIT, SAMPLE_VOICE

pytest.importorskip("aiortc")
pytest.importorskip("fastapi")
PORT = 18305
KEY = "live-key"


@pytest.fixture(scope="module")
def local_live_api(tmp_path_factory):
    import uvicorn

    from avatar.api.app import ApiSettings, create_app
    from avatar.engines.live_set import LiveConfig

    settings = ApiSettings(
        data_dir=tmp_path_factory.mktemp("local-live"),
        api_keys=(KEY,),
        workers=1,
        live_workers=1,
        sessions_per_worker=1,
        live_config=LiveConfig(SAMPLE_PORTRAIT, size_px=256, llm="stub", turn="silence"),
        serve_page=True,  # `/offer` too, where the live probe sends its offer
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=PORT, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="local-live-api")
    thread.start()
    deadline = time.monotonic() + 180
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        assert server.started, "the API did not start"
        yield f"http://127.0.0.1:{PORT}"
    finally:
        server.should_exit = True
        thread.join(60)


def test_a_session_on_the_local_live_worker_talks_and_the_next_finds_it_full(local_live_api):
    from avatar.core.audio_io import load_audio
    from tests.support.live_probe_client import LiveProbe
    from tests.support.loopback_ice import loopback_only
    from tests.support.offers import browser_like_offer

    url = local_live_api
    headers = {"Authorization": f"Bearer {KEY}"}
    speech = load_audio(SAMPLE_VOICE, 16000).pcm.astype(np.float32)[: 16000 * 4]
    question = np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(8000, np.float32)])

    async def scenario():
        async with LiveProbe(url, KEY) as probe:  # its offer goes to /offer: the same placement
            result = await probe.measure_turn(question, 0)
            session = httpx.get(f"{url}/v1/sessions/{probe.session_id}", headers=headers).json()
            pc, sdp = await browser_like_offer()
            try:  # a second client while the only slot is taken
                full = await asyncio.to_thread(
                    httpx.post, f"{url}/v1/sessions", headers=headers, json={"sdp": sdp, "type": "offer"}
                )
            finally:
                await pc.close()
        return result, session, full

    with loopback_only():
        result, session, full = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert result.reply_started, result.notes
    assert session["status"] == "active" and session["worker"] == "live0"
    assert full.status_code == 503 and full.json()["error"]["code"] == "workers_full", full.text
