"""The job store: states, idempotency, cancel, and what a restart does to running jobs."""

from __future__ import annotations

from pathlib import Path

import pytest

from avatar.engines.choice import EngineChoice
from avatar.jobs.spec import JobSpec
from avatar.jobs.store import JobStore
from avatar.render.request import RenderRequest


def _spec(job_id: str) -> str:
    request = RenderRequest(Path("p.jpg"), Path("o.mp4"), text="Hi.", size_px=128)
    return JobSpec(job_id, request, EngineChoice(tts="embedded")).to_json()


def test_spec_round_trips_through_json():
    spec = JobSpec.from_json(_spec("a"))
    assert spec.request.photo_path == Path("p.jpg") and spec.request.size_px == 128
    assert spec.choice == EngineChoice(tts="embedded") and not spec.needs_gpu
    assert JobSpec.from_json(spec.to_json()) == spec


def test_states_idempotency_and_cancel(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    first, created = store.add("a", "k1", _spec("a"), idempotency_key="order-1")
    again, created_again = store.add("b", "k1", _spec("b"), idempotency_key="order-1")
    assert created and not created_again and again.id == first.id == "a"
    other, created_other = store.add("c", "k2", _spec("c"), idempotency_key="order-1")  # another key
    assert created_other and other.id == "c"
    assert [r.id for r in store.queued(10)] == ["a", "c"] and store.count_active("k1") == 1
    assert store.start("a") and not store.start("a")
    store.set_progress("a", 0.4, "host:1")
    store.set_progress("a", 0.2)  # never backwards
    assert store.get("a").progress == pytest.approx(0.4) and store.get("a").worker == "host:1"
    assert store.request_cancel("c").status == "canceled"  # queued: at once
    running = store.request_cancel("a")
    assert running.status == "running" and running.cancel_requested and store.cancel_requested("a")
    done = store.finish("a", "canceled", error="canceled")
    assert done.status == "canceled" and store.finish("a", "succeeded").status == "canceled"  # terminal stays
    assert store.count_active("k1") == 0


def test_a_restart_queues_running_jobs_again(tmp_path):
    path = tmp_path / "jobs.sqlite"
    store = JobStore(path)
    for job_id in ("a", "b", "c"):
        store.add(job_id, "k", _spec(job_id))
    store.start("a")
    store.set_progress("a", 0.5)
    store.start("b")
    store.finish("b", "succeeded", result={"worker": "w:1", "attempt": 1})
    store.close()
    reopened = JobStore(path)
    assert reopened.recover() == ["a"]
    assert [(r.id, r.progress) for r in reopened.queued(10)] == [("a", 0.0), ("c", 0.0)]
    assert reopened.get("b").status == "succeeded" and reopened.get("b").result["worker"] == "w:1"
    assert reopened.get("a").attempts == 1  # the cut-off run counts as an attempt
