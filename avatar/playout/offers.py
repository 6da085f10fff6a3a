"""A browser's WebRTC offer, checked at the edge, for both servers (`avatar serve`, `avatar live`).

aiortc trusts the SDP it is handed: a malformed m-line or attribute surfaces as an AssertionError,
IndexError, KeyError, StopIteration or AttributeError deep inside it. Both servers therefore read
the offer here first: the body is checked, the SDP is parsed once on its own (so any parser
failure is the client's malformed SDP, a 400 that says what is wrong), and the answer is built
with every failure turned into one `OfferError`. A peer connection is created with the server's
own ICE configuration, never aiortc's default public STUN server. A peer that is answered but
never connects is closed after `CONNECT_TIMEOUT_S`, so a slot is held only by a live connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

log = logging.getLogger("avatar.offers")

BAD_OFFER = 'expected JSON {"sdp": "...", "type": "offer"}'
MAX_SDP_CHARS = 64_000  # a browser's offer with audio, video and a data channel is ~3-6 KB
CONNECT_TIMEOUT_S = 20.0  # answered -> ICE + DTLS connected; browsers take well under 5 s on a LAN


class OfferError(ValueError):
    """The offer cannot be used; the message is for the client (HTTP 400)."""


async def read_offer(request) -> str:
    """The SDP of a `POST /offer` body `{"sdp", "type": "offer"}` (docs/live_protocol.md), checked.

    Raises OfferError with what is wrong: not JSON, not an object, a missing or mistyped field, an
    SDP that is empty, too long or does not parse."""
    try:
        params = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise OfferError(f"the body is not JSON: {BAD_OFFER}") from None
    except RecursionError:  # `[[[[...` 45 000 deep fits in 100 kB and exhausts the parser's stack
        raise OfferError(f"the body's JSON is nested too deeply: {BAD_OFFER}") from None
    if not isinstance(params, dict):
        raise OfferError(f"the body is not a JSON object: {BAD_OFFER}")
    sdp, kind = params.get("sdp"), params.get("type")
    if kind != "offer":
        raise OfferError(f'"type" must be "offer", got {kind!r:.40}')
    if not isinstance(sdp, str) or not sdp.strip():
        raise OfferError(f'"sdp" must be a non-empty string: {BAD_OFFER}')
    if len(sdp) > MAX_SDP_CHARS:
        raise OfferError(f'"sdp" is {len(sdp)} characters; the limit is {MAX_SDP_CHARS}')
    check_sdp(sdp)
    return sdp


def check_sdp(sdp: str) -> None:
    """Parse the SDP the way aiortc will, and require something to receive or send media on."""
    from aiortc.sdp import SessionDescription

    if "\x00" in sdp:
        raise OfferError("malformed SDP: it contains a NUL character")
    try:
        description = SessionDescription.parse(sdp)
    except Exception as error:  # aiortc's parser fails with many exception types on bad input
        raise OfferError(f"malformed SDP{_first_bad_line(sdp)}: {_describe(error)}") from None
    if not description.media:
        raise OfferError("the SDP offers no media (no m= line): offer audio and video to receive")
    mids = {media.rtp.muxId for media in description.media}
    for media in description.media:
        if media.kind in ("audio", "video") and not media.rtp.codecs:
            raise OfferError(f"the SDP's {media.kind} m-line lists no codec (a=rtpmap) we can read")
        if media.dtls is None or media.ice is None:
            raise OfferError(f"the SDP's {media.kind} m-line has no ICE credentials or DTLS fingerprint")
    for group in description.group:
        unknown = [mid for mid in group.items if mid not in mids]
        if unknown:  # aiortc would half-apply such an offer and then fail to close
            raise OfferError(f"the SDP's a=group:{group.semantic} names m-lines that do not exist: {unknown}")


def peer_connection(ice_servers: Iterable[str] = ()):
    """An RTCPeerConnection with exactly these ICE servers (none: host candidates only)."""
    from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection

    return RTCPeerConnection(RTCConfiguration([RTCIceServer(url) for url in ice_servers]))


async def answer_offer(pc, sdp: str, tracks: Iterable) -> object:
    """Apply the offer, add our tracks, return the local answer; OfferError when aiortc refuses.

    The caller closes `pc` on OfferError (it owns it)."""
    from aiortc import RTCSessionDescription

    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        for track in tracks:
            pc.addTrack(track)
        await pc.setLocalDescription(await pc.createAnswer())
    except Exception as error:
        log.info("offer refused: %s", _describe(error))
        raise OfferError(f"unusable offer: {_describe(error)}") from None
    return pc.localDescription


async def close_unless_connected(
    pc, close: Callable[[], Awaitable[None]], timeout_s: float = CONNECT_TIMEOUT_S
) -> bool:
    """Wait up to `timeout_s` for the peer to connect; else `close()` it. True when it connected.

    Run as a task the connection's owner tracks (and cancels when it closes first)."""
    loop = asyncio.get_running_loop()
    deadline_s = loop.time() + timeout_s
    while loop.time() < deadline_s:
        if pc.connectionState == "connected":
            return True
        if pc.connectionState in ("failed", "closed"):
            break
        await asyncio.sleep(min(0.25, max(0.0, deadline_s - loop.time())))
    if pc.connectionState == "connected":
        return True
    log.info("peer did not connect within %.0f s (state %s): closing it", timeout_s, pc.connectionState)
    await close()
    return False


def _first_bad_line(sdp: str) -> str:
    """' at line N (`text`)' for the first line whose addition makes the parser fail, else ''.

    aiortc's errors (an IndexError, a bare StopIteration) do not say where; an offer is a few dozen
    lines, so parsing growing prefixes finds the line in milliseconds."""
    from aiortc.sdp import SessionDescription

    lines = sdp.replace("\r\n", "\n").split("\n")
    for count in range(1, len(lines) + 1):
        try:
            SessionDescription.parse("\r\n".join(lines[:count]) + "\r\n")
        except Exception:  # the same failures as the whole parse
            return f" at line {count} (`{lines[count - 1][:80]}`)"
    return ""


async def close_quietly(pc) -> None:
    """Close a peer connection that may be half set up: aiortc can fail while closing one whose
    remote description it only partly applied, and a failed close must not turn into a 500."""
    try:
        await pc.close()
    except Exception as error:
        log.warning("closing a half-set-up peer connection failed: %s", _describe(error))


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}"[:300] if text else type(error).__name__
