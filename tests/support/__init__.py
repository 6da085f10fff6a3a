"""Test and benchmark tooling: fakes, loopback ICE, media probes, a local RTMP server, metrics, the live probe."""
