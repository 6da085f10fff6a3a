# CPU image of `avatar api` (videos, avatars, live sessions) with the Ray client for cluster use.
#   docker build -t talking-avatar .
#   docker run -p 8000:8000 -e AVATAR_API_KEY=change-me -v avatar-data:/data talking-avatar
# The same image is a Ray node: override the command with `ray start --head ...` or
# `ray start --address=HEAD:6379 --block` (docs/deployment.md). Every embedded engine's weights
# ship inside the pip wheels: the image never downloads a model at run time.
# CUDA: build FROM an nvidia/cuda runtime image with Python 3.11, drop the torch CPU pin from
# constraints.txt, install the neural extras (lipsync-neural, tts-cosyvoice) and run with
# --gpus all; Ray then sees the GPUs and `--device cuda` jobs go to GPU workers.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/talking-avatar
COPY pyproject.toml constraints.txt README.md ./
COPY avatar ./avatar
COPY lipsync ./lipsync
COPY voices ./voices
COPY webui ./webui
COPY assets ./assets
RUN pip install -c constraints.txt '.[live,answerer,api,cluster]'

RUN useradd --create-home --uid 1000 avatar && mkdir -p /data && chown avatar /data
USER avatar
ENV XDG_DATA_HOME=/data AVATAR_LIBRARY=/data/avatars AVATAR_CACHE_DIR=/data/cache
VOLUME /data
EXPOSE 8000
# Not loopback: the service refuses to start without AVATAR_API_KEY (or --api-key).
CMD ["avatar", "api", "--host", "0.0.0.0", "--port", "8000", "--data-dir", "/data/api"]
