"""Render jobs behind one interface, on this machine or on a Ray cluster.

    spec      JobSpec: one video to make (a RenderRequest + engine names), as JSON for the store
    store     JobStore: every job's state in SQLite, so a restart loses no queued work
    runner    StagedRunner: renders one job in a worker (engines kept loaded), progress, cancel,
              output staged privately and renamed into place, so no partial file is ever visible
    service   JobService: the queue (store + backend + a dispatcher thread), used by `avatar api`
    local     LocalBackend: a process pool on this machine (the default)
    ray_backend  RayBackend: a render actor per node (or per GPU), retried when a worker dies
    live_pool LivePool: live conversation workers (Ray actors) and session placement
    ray_batch `avatar batch --ray`: a manifest's jobs on the Ray backend

Nothing here imports ray, fastapi or an engine at package import: each backend imports what it
needs when it starts.
"""
