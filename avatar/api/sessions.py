"""`/v1/sessions`: live WebRTC conversations, placed on a live worker (avatar.jobs.live_pool).

The offer is checked here with the servers' own edge code (avatar.playout.offers.read_offer: the
body, the SDP parsed the way aiortc will), so a malformed offer is a 400 that says what is wrong
before any worker is asked. The answer comes from the chosen worker; media then flows between the
client and that worker directly.
"""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from avatar.api.edge import ApiError

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])
EVENT_POLL_S = 0.5
EVENT_KEEPALIVE_S = 15.0


def _pool(request: Request):
    pool = request.app.state.api.live_pool
    if pool is None:
        raise ApiError(
            503, "no_live_workers", "this service runs no live workers: start it with --live-workers N"
        )
    return pool


def _record(request: Request, session_id: str):
    record = _pool(request).sessions.get(session_id)
    if record is None or record.owner != request.state.owner:
        raise ApiError(404, "not_found", f"no session with id {session_id!r}")
    return record


@router.post("", summary="Open a live session: send an SDP offer, get the answer")
async def create_session(request: Request) -> dict:
    """Body `{"sdp": "...", "type": "offer"}` (docs/live_protocol.md); answer `{"sdp", "type",
    "session_id", "worker"}`. 503 when every worker is full."""
    from avatar.jobs.live_pool import PlacementError
    from avatar.playout.offers import OfferError, read_offer

    pool = _pool(request)
    try:
        sdp = await read_offer(request)
        answer = await pool.place(sdp, request.state.owner)
    except OfferError as exc:
        raise ApiError(400, "invalid_offer", str(exc)) from None
    except PlacementError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    return answer


@router.get("/{session_id}", summary="A session's state: active, or ended and why")
async def get_session(request: Request, session_id: str) -> dict:
    return _record(request, session_id).public()


@router.get("/{session_id}/events", summary="The session's events (placed, ended) as server-sent events")
async def session_events(request: Request, session_id: str):
    record = _record(request, session_id)

    async def events():
        sent, quiet_s = 0, 0.0
        while True:
            while sent < len(record.events):
                event = record.events[sent]
                sent, quiet_s = sent + 1, 0.0
                yield f"event: {event['type']}\ndata: {json.dumps({'session_id': session_id, **event})}\n\n"
            if record.status == "ended" or await request.is_disconnected():
                return
            if quiet_s >= EVENT_KEEPALIVE_S:
                quiet_s = 0.0
                yield ": keep-alive\n\n"
            await asyncio.sleep(EVENT_POLL_S)
            quiet_s += EVENT_POLL_S

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


@router.get("", summary="Live workers and their load")
async def list_workers(request: Request) -> dict:
    loads = await asyncio.shield(_pool(request).loads())
    return {
        "workers": [
            {
                "id": worker_id,
                "sessions": len(load["sessions"]),
                "max_sessions": load["max_sessions"],
                "node": load.get("node"),
            }
            for worker_id, load in loads.items()
        ]
    }
