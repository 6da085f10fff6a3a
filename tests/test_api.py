"""Contract tests of `avatar api` through its Python client, against a real server on loopback.

The server is a separate `avatar api` process with the local backend (one worker process, real
engines); videos are checked by reopening the MP4 (H.264 + AAC, matching durations), errors by
their status, code and the exact one-line message the CLI prints for the same input.
"""

from __future__ import annotations

import time

import pytest

from avatar.api.client import ApiError, AvatarClient
from tests.conftest import SAMPLE_PORTRAIT, SAMPLE_VOICE
from tests.support.api_server import running_api, start_api, stop_api
from tests.support.media_probe import probe_media

pytest.importorskip("fastapi")
PORT = 18301
RESTART_PORT = 18302
WEBHOOK_PORT = 18304
KEY = "test-key-ü"  # non-ASCII on purpose: compared as UTF-8 bytes
TEXT = "Hello there. Nice to meet you."
SIZE = 256


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("api-data")
    library = tmp_path_factory.mktemp("api-library")
    args = ("--api-key", KEY, "--workers", "1", "--max-queued-jobs", "3", "--max-upload-mb", "3")
    with (
        running_api(PORT, data_dir, *args, "--library", str(library)) as url,
        AvatarClient(url, api_key=KEY) as client,
    ):
        yield client, data_dir


def _wait(client, video_id, timeout_s=240.0):
    video = client.wait_video(video_id, timeout_s=timeout_s, poll_s=0.25)
    return video


def test_video_from_photo_and_text_reopens_as_h264_and_aac(api, tmp_path):
    client, data_dir = api
    created = client.create_video(photo=SAMPLE_PORTRAIT, text=TEXT, size=SIZE, emotion="happy")
    assert created["status"] == "queued" and created["id"].startswith("vid_")
    seen = [event["progress"] for event in client.video_events(created["id"])]
    video = client.get_video(created["id"])
    assert video["status"] == "succeeded", video
    assert video["progress"] == 1.0 and video["error"] is None
    assert seen == sorted(seen) and seen[-1] == 1.0, seen  # progress only goes up
    path = client.download_video(created["id"], tmp_path / "hello.mp4")
    info = probe_media(path)
    (v,) = info.of_kind("video")
    (a,) = info.of_kind("audio")
    assert v.codec_name == "h264" and a.codec_name == "aac"
    assert max(v.width, v.height) == SIZE
    assert 1.5 < a.duration_s < 6.0, a  # two short sentences
    assert abs(v.duration_s - a.duration_s) <= 0.08, (v.duration_s, a.duration_s)
    outputs = data_dir / "outputs"
    assert sorted(p.name for p in outputs.iterdir()) == [f"{created['id']}.mp4"]  # no partial left
    assert not (data_dir / "uploads" / created["id"]).exists()  # uploads go when the job ends


def test_bad_uploads_are_4xx_with_the_clis_message(api, tmp_path, capsys):
    from avatar.cli import main

    client, _ = api
    not_a_photo = tmp_path / "holiday.png"
    not_a_photo.write_bytes(b"this is not a picture at all")
    with pytest.raises(ApiError) as caught:
        client.create_video(photo=not_a_photo, text=TEXT)
    assert caught.value.status == 400 and caught.value.code == "invalid_input"
    assert (
        main(["render", "--photo", str(not_a_photo), "--text", TEXT, "-o", str(tmp_path / "o.mp4"), "-q"])
        != 0
    )
    cli_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert cli_line == f"error: {caught.value.message}"  # the same line, without a server path

    with pytest.raises(ApiError) as caught:
        client.create_video(photo=SAMPLE_PORTRAIT, text="[furious] Hello!")
    assert caught.value.status == 400 and "furious" in caught.value.message
    with pytest.raises(ApiError) as caught:
        client.create_video(photo=SAMPLE_PORTRAIT)
    assert (caught.value.status, caught.value.message) == (
        400,
        "give either text or an audio file (exactly one)",
    )
    with pytest.raises(ApiError) as caught:
        client.create_video(photo=SAMPLE_PORTRAIT, text=TEXT, emotion="furious")
    assert caught.value.status == 400 and caught.value.message.startswith("unknown emotion 'furious'")
    with pytest.raises(ApiError) as caught:
        client.create_video(photo=SAMPLE_PORTRAIT, text=TEXT, tts="no-such-engine")
    assert caught.value.status == 400 and "unknown --tts 'no-such-engine'" in caught.value.message
    big = tmp_path / "big.jpg"
    big.write_bytes(SAMPLE_PORTRAIT.read_bytes() + bytes(3_200_000))
    with pytest.raises(ApiError) as caught:
        client.create_video(photo=big, text=TEXT)
    assert caught.value.status == 413 and caught.value.code == "payload_too_large"
    with pytest.raises(ApiError) as caught:
        client.get_video("vid_0000000000000000")
    assert caught.value.status == 404


def test_the_key_is_enforced(api):
    client, _ = api
    url = str(client._http.base_url)
    for key in (None, "wrong-key", KEY + "x"):
        with AvatarClient(url, api_key=key) as other, pytest.raises(ApiError) as caught:
            other.list_avatars()
        assert (caught.value.status, caught.value.code) == (401, "unauthorized")
    with AvatarClient(url) as anonymous:
        assert anonymous.health()["ok"] is True  # liveness needs no key
    import httpx

    response = httpx.get(f"{url}/v1/avatars", headers={"X-API-Key": KEY.encode()})
    assert response.status_code == 200


def test_a_non_loopback_bind_needs_a_key(capsys, monkeypatch):
    from avatar.cli import main

    monkeypatch.delenv("AVATAR_API_KEY", raising=False)
    assert main(["api", "--host", "0.0.0.0", "--port", "18399"]) == 2
    assert "reachable from other machines, so a secret is required" in capsys.readouterr().err


def test_serve_on_ray_needs_a_token_off_loopback(capsys, monkeypatch):
    from avatar.cli import main

    pytest.importorskip("ray")
    monkeypatch.delenv("AVATAR_TOKEN", raising=False)
    assert main(["serve", "--ray", "auto", "--host", "0.0.0.0", "--port", "18398"]) == 2
    assert "--token" in capsys.readouterr().err  # refused before any worker starts


def test_cancel_a_queued_and_a_running_video(api):
    client, data_dir = api
    long_text = " ".join(["This sentence keeps the worker busy for a while."] * 8)
    running = client.create_video(photo=SAMPLE_PORTRAIT, text=long_text, size=SIZE)
    queued = client.create_video(photo=SAMPLE_PORTRAIT, text=TEXT, size=SIZE)
    canceled = client.cancel_video(queued["id"])
    assert canceled["status"] == "canceled"  # one worker: the second job had not started
    deadline = time.monotonic() + 120
    while client.get_video(running["id"])["progress"] <= 0.0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert client.get_video(running["id"])["status"] == "running"
    client.cancel_video(running["id"])
    final = _wait(client, running["id"], timeout_s=60)
    assert final["status"] == "canceled", final
    for video_id in (queued["id"], running["id"]):
        with pytest.raises(ApiError) as caught:
            client.download_video(video_id, data_dir / "never.mp4")
        assert caught.value.status == 409
        assert not (data_dir / "outputs" / f"{video_id}.mp4").exists()
    assert not (data_dir / "outputs" / ".partial").exists()


@pytest.fixture
def webhook_receiver():
    """A loopback HTTP server that keeps every JSON body POSTed to it."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", WEBHOOK_PORT), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{WEBHOOK_PORT}/hook", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_idempotency_key_the_per_key_queue_limit_and_the_webhook(api, webhook_receiver):
    client, _ = api
    hook_url, received = webhook_receiver
    first = client.create_video(
        photo=SAMPLE_PORTRAIT, text=TEXT, size=SIZE, idempotency_key="order-17", webhook_url=hook_url
    )
    again = client.create_video(photo=SAMPLE_PORTRAIT, text=TEXT, size=SIZE, idempotency_key="order-17")
    assert again["id"] == first["id"]
    others = [client.create_video(photo=SAMPLE_PORTRAIT, text=TEXT, size=SIZE) for _ in range(2)]
    with pytest.raises(ApiError) as caught:  # limit 3 queued or running for this key
        client.create_video(photo=SAMPLE_PORTRAIT, text=TEXT, size=SIZE)
    assert caught.value.status == 429 and caught.value.code == "too_many_jobs"
    for video in (first, *others):
        assert _wait(client, video["id"])["status"] == "succeeded"
    deadline = time.monotonic() + 10
    while not received and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [(r["event"], r["video"]["id"], r["video"]["progress"]) for r in received] == [
        ("video.succeeded", first["id"], 1.0)
    ]  # one POST, for the job that asked for it


def test_avatar_library_over_http(api, tmp_path):
    client, _ = api
    with pytest.raises(ApiError) as caught:
        client.create_avatar("   ", SAMPLE_PORTRAIT)
    assert caught.value.status == 400
    assert caught.value.message == "the avatar name is empty (type a name, e.g. Mona or 小美)"
    created = client.create_avatar(
        "Mona API", SAMPLE_PORTRAIT, SAMPLE_VOICE, transcript="hello", language="en"
    )
    assert created["slug"] == "mona-api" and created["voice"] is True
    assert [a["name"] for a in client.list_avatars()] == ["Mona API"]
    video = client.create_video(avatar="Mona API", text=TEXT, size=SIZE)  # its photo and matched voice
    assert _wait(client, video["id"])["status"] == "succeeded"
    info = probe_media(client.download_video(video["id"], tmp_path / "mona.mp4"))
    assert {s.codec_name for s in info.streams} == {"h264", "aac"}
    with pytest.raises(ApiError) as caught:
        client.create_video(avatar="Nobody", text=TEXT)
    assert caught.value.status == 400 and caught.value.message.startswith("no avatar named 'Nobody'")
    client.delete_avatar("Mona API")
    assert client.list_avatars() == []
    with pytest.raises(ApiError) as caught:
        client.delete_avatar("Mona API")
    assert caught.value.status == 404


def test_queued_work_survives_a_restart(tmp_path):
    """Jobs queued when the server is killed (-9) are rendered by the next server on that data."""
    data_dir = tmp_path / "data"
    process = start_api(RESTART_PORT, data_dir, "--workers", "1")
    try:
        with AvatarClient(f"http://127.0.0.1:{RESTART_PORT}") as client:
            ids = [client.create_video(photo=SAMPLE_PORTRAIT, text=TEXT, size=SIZE)["id"] for _ in range(2)]
    finally:
        stop_api(process, hard=True)
    with running_api(RESTART_PORT, data_dir, "--workers", "1") as url, AvatarClient(url) as client:
        for video_id in ids:
            assert _wait(client, video_id)["status"] == "succeeded"
            info = probe_media(client.download_video(video_id, tmp_path / f"{video_id}.mp4"))
            assert {s.codec_name for s in info.streams} == {"h264", "aac"}


def test_openapi_describes_the_routes(api):
    client, _ = api
    spec = client._http.get("/openapi.json").json()
    for path in (
        "/v1/videos",
        "/v1/videos/{video_id}",
        "/v1/videos/{video_id}/content",
        "/v1/avatars",
        "/v1/sessions",
    ):
        assert path in spec["paths"], path
