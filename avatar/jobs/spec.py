"""One render job as data: what to render, with which engines, where the result goes.

A job travels to a worker process, to a Ray actor on another node and into the SQLite store, so
it is plain JSON-able data (paths as strings), never an engine or an open file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from avatar.core.errors import EngineUnavailable
from avatar.core.optional import module_available
from avatar.engines.choice import EngineChoice
from avatar.render.request import RenderRequest

_PATH_FIELDS_REQUEST = ("photo_path", "output_path", "audio_path", "voice_sample_path")
_PATH_FIELDS_CHOICE = ("cosyvoice_model_dir", "cosyvoice_checkout", "wav2lip_checkpoint")


@dataclass(frozen=True)
class JobSpec:
    """A video to make. `request.output_path` is the final file; the runner stages it elsewhere."""

    job_id: str
    request: RenderRequest
    choice: EngineChoice = field(default_factory=EngineChoice)

    @property
    def needs_gpu(self) -> bool:
        """Neural engines on CUDA: the Ray backend places such a job on a worker holding a GPU."""
        return self.choice.device.startswith("cuda")

    def to_json(self) -> str:
        def plain(obj) -> dict:
            return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(obj).items()}

        return json.dumps(
            {"job_id": self.job_id, "request": plain(self.request), "choice": plain(self.choice)}
        )

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        data = json.loads(text)
        request = _with_paths(data["request"], _PATH_FIELDS_REQUEST, RenderRequest)
        choice = _with_paths(data.get("choice", {}), _PATH_FIELDS_CHOICE, EngineChoice)
        return cls(data["job_id"], RenderRequest(**request), EngineChoice(**choice))


def _with_paths(values: dict, path_fields: tuple[str, ...], kind) -> dict:
    """Known fields only (a store written by an older version still loads), strings -> Paths."""
    known = {f.name for f in fields(kind)}
    return {
        k: (Path(v) if k in path_fields and v is not None else v) for k, v in values.items() if k in known
    }


def require_ray() -> None:
    """`--ray` without Ray installed is one line naming the extra, not an ImportError."""
    if not module_available("ray"):
        raise EngineUnavailable("--ray needs Ray installed", "pip install -c constraints.txt '.[cluster]'")
