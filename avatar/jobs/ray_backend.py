"""The `ray` backend: render jobs on a Ray cluster, one long-lived render actor per CPU slot of
each node (and one per GPU for jobs on `--device cuda`).

Why actors and not plain tasks: a worker that keeps its engines loaded (TTS voice, face
landmarker, prepared photos) renders the second job in a fraction of the first one's time; a
task would load them every time. Ray does the rest: placement (each actor is pinned softly to its
node), restarts (`max_restarts=-1`) and retries (`max_task_retries`): when a worker process dies
in the middle of a render, Ray starts the actor again and runs the same call on it. The job's
runner (avatar.jobs.runner) makes that safe: each attempt renders into its own staging folder on
the shared output location and only a finished file is renamed into place.

Importing this module imports ray (only the API's `--ray`, `avatar batch --ray` and the Ray
worker processes do).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Future
from dataclasses import dataclass

import ray

from avatar.core.errors import EngineUnavailable, InputError
from avatar.jobs.spec import JobSpec

log = logging.getLogger("avatar.ray")
RENDER_RETRIES = 3  # Ray runs a call again this often on a restarted actor before giving up


def connect(address: str | None) -> None:
    """Join the cluster at `address` ("auto": the one this node belongs to); once per process."""
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING, namespace="avatar")
    except ConnectionError as error:
        raise EngineUnavailable(
            f"cannot reach a Ray cluster at {address}: {error}",
            "start one with `ray start --head`, or check --ray",
        ) from None


@ray.remote(max_restarts=-1, max_task_retries=RENDER_RETRIES, concurrency_groups={"render": 1, "control": 2})
class RenderWorker:
    """Renders one job at a time with its engines kept loaded; status and cancel are answered on
    their own thread while a render runs."""

    def __init__(self) -> None:
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(name, "1")
        import cv2

        from avatar.jobs.runner import StagedRunner

        cv2.setNumThreads(1)
        self.node_id = ray.get_runtime_context().get_node_id()
        self.runner = StagedRunner(worker=f"{self.node_id[:12]}:{os.getpid()}")
        self.job_id: str | None = None
        self.progress = 0.0
        self.canceled: set[str] = set()
        self.jobs_done = 0

    @ray.method(concurrency_group="render")
    def render(self, spec_json: str) -> dict:
        spec = JobSpec.from_json(spec_json)
        self.job_id, self.progress = spec.job_id, 0.0

        def progress(fraction: float) -> None:
            self.progress = fraction

        try:
            result = self.runner.run_job(spec, progress, lambda: spec.job_id in self.canceled)
        finally:
            self.job_id = None
            self.jobs_done += 1
        return {**result.to_dict(), "node_id": self.node_id}

    @ray.method(concurrency_group="control")
    def status(self) -> dict:
        return {
            "job_id": self.job_id,
            "progress": self.progress,
            "worker": self.runner.worker,
            "node_id": self.node_id,
            "pid": os.getpid(),
            "jobs_done": self.jobs_done,
        }

    @ray.method(concurrency_group="control")
    def cancel(self, job_id: str) -> None:
        self.canceled.add(job_id)


@dataclass
class Slot:
    """One render actor and what it is doing."""

    actor: object
    node_id: str
    gpu: bool
    job_id: str | None = None
    future: Future | None = None
    status_ref: object | None = None

    @property
    def free(self) -> bool:
        return self.future is None or self.future.done()


class RayBackend:
    """Jobs as calls on render actors spread over the cluster's nodes."""

    name = "ray"

    def __init__(self, address: str | None = "auto", *, cpus_per_worker: float = 1.0) -> None:
        connect(address)
        self.slots = _create_slots(cpus_per_worker)
        if not self.slots:
            raise EngineUnavailable(
                "the Ray cluster has no node with a free CPU for a render worker", "add a node"
            )
        self.capacity = len(self.slots)

    def submit(self, spec: JobSpec) -> Future:
        """A future of the job's result dict (a Ray ObjectRef's future)."""
        candidates = [slot for slot in self.slots if slot.gpu == spec.needs_gpu]
        if not candidates:
            future: Future = Future()
            future.set_exception(
                InputError(
                    f"job {spec.job_id} asks for --device {spec.choice.device}, but the Ray cluster has no GPU"
                )
            )
            return future
        slot = next((s for s in candidates if s.free), None) or min(
            candidates, key=lambda s: s.job_id is not None
        )
        slot.job_id = spec.job_id
        slot.future = slot.actor.render.remote(spec.to_json()).future()
        return slot.future

    def request_cancel(self, job_id: str) -> None:
        for slot in self.slots:
            if slot.job_id == job_id and not slot.free:
                slot.actor.cancel.remote(job_id)

    def poll_progress(self) -> dict[str, tuple[float, str]]:
        """job id -> (progress, worker) from the busy actors whose status answer has arrived."""
        busy = [slot for slot in self.slots if not slot.free]
        for slot in busy:
            if slot.status_ref is None:
                slot.status_ref = slot.actor.status.remote()
        refs = [slot.status_ref for slot in busy]
        if not refs:
            return {}
        # No waiting: answers not in yet are collected on the dispatcher's next round.
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        ready = set(ready)
        progress = {}
        for slot in busy:
            if slot.status_ref in ready:
                try:
                    status = ray.get(slot.status_ref)
                except ray.exceptions.RayError:
                    status = {}
                slot.status_ref = None
                if status.get("job_id"):
                    progress[status["job_id"]] = (status["progress"], status["worker"])
        return progress

    def worker_statuses(self, timeout_s: float = 10.0) -> list[dict]:
        """Every actor's status (node, pid, current job): for tests, benchmarks and /v1/service."""
        return ray.get([slot.actor.status.remote() for slot in self.slots], timeout=timeout_s)

    def worker_failed(self, future: Future, error: BaseException) -> None:
        """Nothing to rebuild: Ray restarts the actor by itself."""

    @staticmethod
    def failure_message(error: BaseException, attempts: int) -> str:
        if isinstance(error, InputError):
            return str(error)
        if isinstance(error, ray.exceptions.RayActorError):
            return f"the Ray worker died {attempts} times while rendering (out of memory? a node lost?)"
        return f"internal error {type(error).__name__}: {str(error)[:300]}"

    def describe(self) -> dict:
        nodes = {slot.node_id for slot in self.slots}
        return {"backend": self.name, "workers": len(self.slots), "nodes": len(nodes)}

    def close(self) -> None:
        for slot in self.slots:
            ray.kill(slot.actor, no_restart=True)
        self.slots = []


def _create_slots(cpus_per_worker: float) -> list[Slot]:
    """floor(CPUs / cpus_per_worker) CPU actors per alive node, plus one GPU actor per GPU."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    slots = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        resources, node_id = node.get("Resources", {}), node["NodeID"]
        gpus = int(resources.get("GPU", 0))
        cpus = int(resources.get("CPU", 0) // cpus_per_worker)
        strategy = NodeAffinitySchedulingStrategy(
            node_id, soft=True
        )  # may restart elsewhere if the node goes
        for index in range(cpus + gpus):
            gpu = index >= cpus
            options = {"num_cpus": 0 if gpu else cpus_per_worker, "num_gpus": 1 if gpu else 0}
            actor = RenderWorker.options(scheduling_strategy=strategy, **options).remote()
            slots.append(Slot(actor, node_id, gpu))
    return slots
