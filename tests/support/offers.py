"""WebRTC offers for tests: a browser-like valid one, and a table of malformed ones.

The malformed cases are the ones hostile-client probes found against `POST /offer` (issues 16 and
18: crafted m-lines, rtpmap, setup, BUNDLE, a missing codec) plus body-level mistakes.
"""

from __future__ import annotations

import json


async def browser_like_offer() -> tuple[object, str]:
    """(the client's peer connection, its offer SDP): audio + video to receive, a data channel."""
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendrecv")
    pc.addTransceiver("video", direction="recvonly")
    pc.createDataChannel("events")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


def malformed_offers(valid_sdp: str) -> dict[str, tuple[bytes, str]]:
    """name -> (request body, a phrase the 400 message must contain); issues 16 and 18 cases first."""
    lines = valid_sdp.split("\r\n")
    audio_m = next(line for line in lines if line.startswith("m=audio"))
    first_rtpmap = next(line for line in lines if line.startswith("a=rtpmap:"))

    def sdp_body(sdp: str) -> bytes:
        return json.dumps({"sdp": sdp, "type": "offer"}).encode()

    def edited(old: str, new: str) -> bytes:
        return sdp_body(valid_sdp.replace(old, new, 1))

    bare = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    no_h264 = "\r\n".join(line for line in lines if "H264" not in line)
    return {
        "m-line port not a number": (sdp_body(bare + "m=audio x UDP/TLS/RTP/SAVPF 96\r\n"), "malformed SDP"),
        "m-line without formats": (sdp_body(bare + "m=audio 9 UDP/TLS/RTP/SAVPF\r\n"), "SDP"),
        "empty rtpmap": (edited(first_rtpmap, "a=rtpmap:0 "), "SDP"),
        "empty setup": (edited("a=setup:actpass", "a=setup:"), "SDP"),
        "bundle of unknown mids": (edited("a=group:BUNDLE 0 1 2", "a=group:BUNDLE -1 1 2"), "do not exist"),
        "audio m-line corrupted": (edited(audio_m, "m=audio"), "SDP"),
        "no media at all": (sdp_body(bare), "no media"),
        "no H264 left": (sdp_body(no_h264), "at line"),
        "truncated in half": (sdp_body(valid_sdp[: len(valid_sdp) // 2]), "SDP"),
        "NUL inside": (edited("a=setup:actpass", "a=setup:act\x00pass"), "NUL"),
        "not an SDP": (sdp_body("hello"), "SDP"),
        "whitespace SDP": (sdp_body("   "), "non-empty"),
        "SDP too long": (sdp_body(valid_sdp + "a=x-pad:" + "x" * 70_000 + "\r\n"), "limit"),
        "not JSON": (b"{sdp: nope", "not JSON"),
        "invalid UTF-8": (b'{"sdp": "\xff\xfe", "type": "offer"}', "JSON"),
        "JSON array": (b'["offer"]', "not a JSON object"),
        "JSON string": (b'"offer"', "not a JSON object"),
        "type answer": (json.dumps({"sdp": valid_sdp, "type": "answer"}).encode(), '"type" must be "offer"'),
        "type missing": (json.dumps({"sdp": valid_sdp}).encode(), '"type" must be "offer"'),
        "sdp a number": (json.dumps({"sdp": 5, "type": "offer"}).encode(), '"sdp" must be'),
        "sdp missing": (json.dumps({"type": "offer"}).encode(), '"sdp" must be'),
        "empty body": (b"", "not JSON"),
    }
