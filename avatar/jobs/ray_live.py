"""Live workers as Ray actors: each runs an `avatar serve` server (LiveServer) on its node and
holds up to K sessions; avatar.jobs.live_pool places sessions on them.

An async actor, so the aiohttp server and aiortc's connections live on the actor's own event
loop. The server listens on the node's address with a private token that only the pool knows:
offers reach a worker only through the API's checked, keyed `POST /v1/sessions`. A worker is not
restarted when it dies (its sessions' peer connections died with it, and a new actor would not
know them): the pool ends those sessions with an event and places new ones elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets

import ray

from avatar.jobs.ray_backend import connect


@ray.remote(max_restarts=0)
class LiveWorkerActor:
    def __init__(self, config, max_sessions: int, host: str, port: int, loopback_only: bool) -> None:
        if loopback_only:
            from avatar.live.ice import install_loopback_only

            install_loopback_only()
        from avatar.engines.live_set import LiveEngines
        from avatar.live.server import LiveServer

        self.engines = LiveEngines(config).load()
        self.token = secrets.token_urlsafe(24)
        self.server = LiveServer(self.engines, token=self.token, max_sessions=max_sessions)
        self.max_sessions, self.host, self.port = max_sessions, host, port
        self.node_id = ray.get_runtime_context().get_node_id()
        self.runner = None
        self.url = ""

    async def start(self) -> dict:
        from aiohttp import web

        self.runner = web.AppRunner(self.server.app())
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port).start()
        host, port = self.runner.addresses[0][:2]
        if self.host in ("0.0.0.0", "::"):  # bound everywhere: reach it at the node's address
            host = ray.util.get_node_ip_address()
        self.url = f"http://{host}:{port}"
        return {"url": self.url, "token": self.token, "node_id": self.node_id, "pid": os.getpid()}

    async def load(self) -> dict:
        return {
            "sessions": list(self.server.sessions),
            "max_sessions": self.max_sessions,
            "node": self.node_id,
        }

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        self.engines.close()


class RayLiveWorker:
    """The pool's view of one LiveWorkerActor (same methods as live_pool.LocalLiveWorker)."""

    def __init__(self, worker_id: str, actor, info: dict) -> None:
        self.worker_id, self.actor = worker_id, actor
        self.url, self.token = info["url"], info["token"]
        self.node_id, self.pid = info["node_id"], info["pid"]

    async def load(self) -> dict:
        return await self.actor.load.remote()

    async def stop(self) -> None:
        with contextlib.suppress(Exception):  # already dead, or stuck: killed below either way
            await asyncio.wait_for(self.actor.stop.remote(), 20.0)
        ray.kill(self.actor, no_restart=True)


async def start_ray_live_workers(
    config, count: int, max_sessions: int, host: str, ports: list[int], address: str | None = "auto"
) -> list[RayLiveWorker]:
    """`count` live actors, dealt round the alive nodes in turn, started and reachable.

    They reserve no Ray CPU (`num_cpus=0`): render actors take every CPU slot, and a live worker
    must not wait behind them. Size --live-workers and --sessions-per-worker to the nodes."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from avatar.live.ice import loopback_requested

    connect(address)
    loopback = loopback_requested() or host == "127.0.0.1"
    nodes = sorted(node["NodeID"] for node in ray.nodes() if node.get("Alive"))
    actors = [
        LiveWorkerActor.options(
            # hard affinity: Ray's soft affinity put zero-CPU actors all on one node
            num_cpus=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(nodes[i % len(nodes)], soft=False),
        ).remote(config, max_sessions, host, ports[i] if i < len(ports) else 0, loopback)
        for i in range(count)
    ]
    try:
        infos = await asyncio.gather(*(actor.start.remote() for actor in actors))
    except BaseException:
        for actor in actors:  # none is left running when one could not start
            ray.kill(actor, no_restart=True)
        raise
    return [
        RayLiveWorker(f"live{i}", actor, info)
        for i, (actor, info) in enumerate(zip(actors, infos, strict=True))
    ]
