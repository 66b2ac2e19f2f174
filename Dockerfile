# One image for the gateway, the workers and the migration step; docker-compose.yml picks the
# command. The models folder ships inside the image.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY pyproject.toml ./
COPY ml ml
COPY jobs jobs
COPY api api
COPY worker worker
COPY client client
RUN pip install -e .

COPY alembic.ini ./
COPY alembic alembic
COPY scripts scripts
COPY frontend frontend
COPY models models

RUN useradd --create-home --uid 1000 hwr && mkdir -p /app/var && chown hwr /app/var
USER hwr
EXPOSE 8000
CMD ["uvicorn", "--factory", "api.main:create_app", "--host", "0.0.0.0", "--port", "8000"]
