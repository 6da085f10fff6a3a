"""`avatar api`: the HTTP service for videos, avatars and live sessions (FastAPI, OpenAPI at
/openapi.json, docs at /docs), and `avatar.api.client`, its Python client.

    app       create_app: the FastAPI application, its lifespan (job service, live pool)
    edge      the key check on every route, per-key limits, JSON errors {"error": {"code", "message"}}
    uploads   multipart files saved under a size limit
    videos    /v1/videos: render jobs (create, status, content, cancel, SSE events)
    avatars   /v1/avatars: the avatar library
    sessions  /v1/sessions: live WebRTC sessions placed on a live worker
    client    AvatarClient (httpx): what the tests and users' programs call

FastAPI, uvicorn and httpx are imported only by these modules, never by `import avatar`.
"""
