# glucokit's Cloud Run workers: the retrain service (the default command) and the retrain job.
#
#   docker build -t glucokit-workers .
#   service: the image as is (listens on $PORT)
#   job:     command `python workers/retrain_job.py`
#
# Both need DATABASE_URL (a login role that may `set role glucokit_worker`, see
# docs/worker-role.md) and GLUCOKIT_MODEL_DIR (where the model files live, e.g. a
# Cloud Storage FUSE volume mount).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# torch's CPU build first, from PyTorch's own index: the one on PyPI pulls in CUDA (gigabytes).
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

COPY pyproject.toml requirements.lock README.md ./
COPY lib ./lib
RUN pip install -c requirements.lock .

COPY workers ./workers
RUN useradd --create-home glucokit
USER glucokit

CMD ["python", "workers/retrain_service.py"]
