# glucokit's Cloud Run services and jobs, one image:
#
#   docker build -t glucokit-workers .
#   retrain service: the image as is (listens on $PORT; needs GLUCOKIT_RETRAIN_AUDIENCE and
#                    GLUCOKIT_RETRAIN_INVOKERS, see docs/retrain-queue.md)
#   retrain job:     command `python workers/retrain_job.py`
#   forecast job:    command `python workers/forecast_job.py`
#   privacy job:     command `glucokit privacy run` (erased persons' files, withdrawn models)
#   day patterns:    command `glucokit patterns compute --all` (once a day)
#   retention:       command `glucokit retention run` (once a day: forecast partitions ahead, expired days dropped)
#   API service:     command `python workers/api_service.py` (listens on $PORT)
#
# Every setting, with who reads it, is in README.md's settings table. The workers need DATABASE_URL
# (a login role that may `set role glucokit_worker`, see docs/worker-role.md) and where the model
# files live: GLUCOKIT_MODEL_DIR (e.g. a Cloud Storage FUSE volume mount) or the project's Storage
# (SUPABASE_URL, SUPABASE_ANON_KEY, SUPABASE_JWT_SECRET). The API needs a login that may
# `set role authenticated` and SUPABASE_URL and/or SUPABASE_JWT_SECRET to verify tokens
# (docs/api.md). On Cloud Run (K_SERVICE or CLOUD_RUN_JOB, which it sets) they log JSON lines for
# Cloud Logging; set GOOGLE_CLOUD_PROJECT for the requests' trace ids.
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
