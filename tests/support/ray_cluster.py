"""A local multi-node Ray cluster on 127.0.0.1 for tests and benchmarks, always shut down.

`ray.cluster_utils.Cluster` starts each node's processes (GCS, raylet, object store) as children
it keeps handles to, and `shutdown()` kills exactly those, so nothing is stopped by name. Every
port is inside the range given (the helpers of this project share a machine), the dashboard is
off, and each node's object store is capped small.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

OBJECT_STORE_BYTES = 80 * 1024 * 1024  # Ray's minimum is 75 MiB; jobs pass only small JSON
PORTS_PER_NODE = 16


def node_args(index: int, base_port: int, num_cpus: int, resources: dict | None = None) -> dict:
    """Ray node settings with every listening port inside [base_port + 16*index, base_port + 16*(index+1))."""
    first = base_port + index * PORTS_PER_NODE
    args = {
        "num_cpus": num_cpus,
        "num_gpus": 0,
        "resources": resources or {},
        "object_store_memory": OBJECT_STORE_BYTES,
        "node_ip_address": "127.0.0.1",
        "include_dashboard": False,
        "node_manager_port": first + 1,
        "object_manager_port": first + 2,
        "metrics_agent_port": first + 3,
        "metrics_export_port": first + 4,
        "dashboard_agent_listen_port": first + 5,
        "runtime_env_agent_port": first + 6,
        "min_worker_port": first + 7,
        "max_worker_port": first + PORTS_PER_NODE - 2,
    }
    if index == 0:
        args["gcs_server_port"] = first  # the GCS: the cluster's address
    return args


@contextlib.contextmanager
def local_cluster(nodes: int = 2, base_port: int = 18320, cpus_per_node: int = 1) -> Iterator[object]:
    """A `nodes`-node cluster, the calling process connected as its driver; yields the Cluster."""
    import ray
    import ray._private.ray_constants as ray_constants
    from ray.cluster_utils import Cluster

    # Ray turns a loopback address into the machine's outward one ("remotely reachable") before
    # connecting, unless it runs as a single-machine cluster (its Windows/macOS mode): with the
    # GCS listening on 127.0.0.1 only, that mode is what keeps the driver on loopback.
    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    single_machine = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    cluster = Cluster(
        initialize_head=True, connect=False, head_node_args=node_args(0, base_port, cpus_per_node)
    )
    try:
        for index in range(1, nodes):
            cluster.add_node(**node_args(index, base_port, cpus_per_node, {f"node{index}": 1}))
        cluster.wait_for_nodes()
        # cluster.address names the machine's outward address; the GCS listens on loopback only
        cluster.loopback_address = f"127.0.0.1:{base_port}"
        ray.init(address=cluster.loopback_address, log_to_driver=False, namespace="avatar")
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        ray_constants.ENABLE_RAY_CLUSTER = single_machine
        os.environ.pop(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR, None)
