"""Jobs and live sessions on a real local Ray cluster: two nodes on 127.0.0.1, one CPU each.

Marked `cluster` (they run in `make test`; about two minutes together on 2 cores). The cluster is
started once for the module and shut down by the fixture however the tests end. Renders are
real (embedded engines, small frames); outputs are checked by reopening them.
"""

from __future__ import annotations

import asyncio
import csv
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SAMPLE_PORTRAIT, SAMPLE_VOICE
from tests.support.media_probe import probe_media

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]
SIZE = 256
API_PORT = 18303
KEY = "cluster-key"


@pytest.fixture(scope="module")
def cluster():
    from tests.support.ray_cluster import local_cluster

    with local_cluster(nodes=2, base_port=18320) as started:
        yield started


@pytest.fixture(scope="module")
def backend(cluster):
    from avatar.jobs.ray_backend import RayBackend

    started = RayBackend(address=cluster.loopback_address)
    yield started
    started.close()


def _check_mp4(path: Path, min_audio_s: float) -> None:
    info = probe_media(path)
    (video,) = info.of_kind("video")
    (audio,) = info.of_kind("audio")
    assert (video.codec_name, audio.codec_name) == ("h264", "aac")
    assert audio.duration_s >= min_audio_s, (path, audio.duration_s)
    assert abs(video.duration_s - audio.duration_s) <= 0.08, (path, video.duration_s, audio.duration_s)


def test_twenty_jobs_spread_over_both_nodes(backend, tmp_path):
    from avatar.jobs.ray_batch import run_batch_on_ray

    manifest = tmp_path / "jobs.csv"
    with open(manifest, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["photo", "text", "size", "output"])
        for index in range(20):
            writer.writerow([str(SAMPLE_PORTRAIT), f"Video number {index}.", SIZE, f"videos/job{index}.mp4"])
    report = run_batch_on_ray(manifest, tmp_path / "videos", backend=backend)
    assert len(report.succeeded) == 20, [str(f) for f in report.failed]
    import json

    entries = json.loads(report.report_path.read_text())["succeeded"]
    nodes = {entry["node_id"] for entry in entries}
    assert nodes == {node["NodeID"] for node in ray.nodes() if node["Alive"]} and len(nodes) == 2
    per_node = {node: sum(e["node_id"] == node for e in entries) for node in nodes}
    assert min(per_node.values()) >= 5, per_node  # both nodes did a real share of the work
    for index in range(20):
        _check_mp4(tmp_path / "videos" / f"job{index}.mp4", min_audio_s=0.5)
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == sorted(
        [f"job{i}.mp4" for i in range(20)] + ["batch_report.json"]
    )  # no staging folder or partial file left


def test_a_worker_killed_mid_render_is_retried_to_one_complete_output(backend, tmp_path):
    from avatar.jobs.service import JobService
    from avatar.jobs.store import JobStore

    out_dir = tmp_path / "out"
    service = JobService(JobStore(tmp_path / "jobs.sqlite"), backend, out_dir, owns_backend=False).start()
    try:
        _kill_mid_render(service, backend, out_dir)
    finally:
        service.close()


def _kill_mid_render(service, backend, out_dir: Path) -> None:
    from avatar.jobs.spec import JobSpec
    from avatar.render.request import RenderRequest

    text = " ".join(f"This is sentence number {n}, spoken while a worker is killed." for n in range(5))
    service.submit(
        JobSpec("killed", RenderRequest(SAMPLE_PORTRAIT, out_dir / "x.mp4", text=text, size_px=SIZE)), "test"
    )
    deadline = time.monotonic() + 120
    record = service.store.get("killed")
    while not (record.status == "running" and record.progress >= 0.35) and time.monotonic() < deadline:
        time.sleep(0.05)
        record = service.store.get("killed")
    assert record.status == "running" and record.progress >= 0.35, record
    victim = next(s for s in backend.worker_statuses() if s["job_id"] == "killed")
    os.kill(victim["pid"], signal.SIGKILL)  # the worker process, in the middle of the frames
    while record.status in ("queued", "running") and time.monotonic() < deadline + 120:
        time.sleep(0.2)
        record = service.store.get("killed")
    assert record.status == "succeeded", record
    assert record.result["attempt"] == 2 and not record.result["worker"].endswith(f":{victim['pid']}"), record
    assert sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*")) == ["killed.mp4"]
    _check_mp4(out_dir / "killed.mp4", min_audio_s=10.0)  # the whole text, not what was left


@pytest.fixture(scope="module")
def live_api(cluster, backend, tmp_path_factory):
    """The API on loopback with its jobs on the Ray backend, two live workers, and the live page
    of `avatar serve --ray` (/, /offer)."""
    import uvicorn

    from avatar.api.app import ApiSettings, create_app
    from avatar.engines.live_set import LiveConfig
    from avatar.jobs.service import JobService
    from avatar.jobs.store import JobStore

    data_dir = tmp_path_factory.mktemp("live-api")
    service = JobService(
        JobStore(data_dir / "jobs.sqlite"), backend, data_dir / "outputs", owns_backend=False
    )
    settings = ApiSettings(
        data_dir=data_dir,
        api_keys=(KEY,),
        ray_address=cluster.loopback_address,
        live_workers=2,
        sessions_per_worker=1,
        live_config=LiveConfig(SAMPLE_PORTRAIT, size_px=256, llm="stub", turn="silence"),
        serve_page=True,
    )
    app = create_app(settings, service=service)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=API_PORT, log_level="warning"))
    thread = threading.Thread(target=server.run, name="live-api")
    thread.start()
    deadline = time.monotonic() + 180
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        assert server.started, "the live API did not start"
        yield f"http://127.0.0.1:{API_PORT}", app
    finally:
        server.should_exit = True
        thread.join(60)


def _question() -> np.ndarray:
    from avatar.core.audio_io import load_audio

    speech = load_audio(SAMPLE_VOICE, 16000).pcm.astype(np.float32)[: 16000 * 4]
    pad = np.zeros(8000, np.float32)
    return np.concatenate([pad, speech, pad])


def test_two_live_sessions_on_two_workers_both_talk_and_a_dead_worker_ends_its_session(live_api):
    import httpx

    from tests.support.live_probe_client import LiveProbe
    from tests.support.loopback_ice import loopback_only

    url, app = live_api
    question = _question()
    headers = {"Authorization": f"Bearer {KEY}"}

    async def scenario():
        async with LiveProbe(url, KEY, 0) as first, LiveProbe(url, KEY, 1) as second:
            results = await asyncio.gather(first.measure_turn(question, 0), second.measure_turn(question, 0))
            sessions = [
                httpx.get(f"{url}/v1/sessions/{p.session_id}", headers=headers).json()
                for p in (first, second)
            ]
            pool = app.state.api.live_pool
            nodes = {pool.workers[s["worker"]].node_id for s in sessions}
            victim = pool.workers[sessions[0]["worker"]]
            os.kill(victim.pid, signal.SIGKILL)
            deadline = time.monotonic() + 20
            ended = sessions[0]
            while ended["status"] == "active" and time.monotonic() < deadline:
                await asyncio.sleep(0.25)
                ended = httpx.get(f"{url}/v1/sessions/{first.session_id}", headers=headers).json()
            events = httpx.get(
                f"{url}/v1/sessions/{first.session_id}/events", headers=headers, timeout=10
            ).text
        deadline = time.monotonic() + 30  # the surviving worker notices the second client leaving
        while time.monotonic() < deadline:
            workers = httpx.get(f"{url}/v1/sessions", headers=headers).json()["workers"]
            if any(w["sessions"] < w["max_sessions"] for w in workers):
                break
            await asyncio.sleep(0.25)
        async with LiveProbe(url, KEY, 2) as third:
            placed = httpx.get(f"{url}/v1/sessions/{third.session_id}", headers=headers).json()
        return results, sessions, nodes, ended, events, placed, victim.worker_id

    with loopback_only():
        results, sessions, nodes, ended, events, placed, dead = asyncio.run(asyncio.wait_for(scenario(), 240))
    assert all(r.reply_started for r in results), [r.notes for r in results]
    assert len({s["worker"] for s in sessions}) == 2 and len(nodes) == 2, sessions
    assert ended["status"] == "ended" and ended["reason"] == "worker_died", ended
    assert "event: session_ended" in events and "worker_died" in events
    assert placed["status"] == "active" and placed["worker"] != dead, placed


def test_the_api_renders_on_the_ray_backend(live_api, tmp_path):
    from avatar.api.client import AvatarClient

    url, _ = live_api
    nodes = {node["NodeID"][:12] for node in ray.nodes() if node["Alive"]}
    with AvatarClient(url, api_key=KEY) as client:
        video = client.create_video(photo=SAMPLE_PORTRAIT, text="Rendered on a Ray node.", size=SIZE)
        done = client.wait_video(video["id"], timeout_s=120, poll_s=0.2)
        assert done["status"] == "succeeded", done
        assert done["worker"].split(":")[0] in nodes, done  # a render actor of the cluster did it
        _check_mp4(client.download_video(video["id"], tmp_path / "ray.mp4"), min_audio_s=1.0)
