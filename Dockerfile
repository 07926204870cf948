# User-code image of flow-assets: the gRPC code server the webserver and daemon load
# (deploy/workspace.yaml) and, with the EcsRunLauncher, the image every run's task starts from.
# UNTESTED: no Docker engine runs where this was written, so it was never built; the command and
# the package install are the ones the tests run (flow_assets_tests/test_production.py).
#   docker build -t flow-assets .
#   docker run -p 4000:4000 -e DAGSTER_HOME=/opt/dagster/home -v <instance dir>:/opt/dagster/home \
#     -e FLOW_ASSETS_STORAGE_URL=s3://bucket/prefix ... flow-assets
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DAGSTER_HOME=/opt/dagster/home
WORKDIR /opt/flow-assets

# Dependencies and the package from the same pyproject.toml as development and CI.
COPY pyproject.toml README.md ./
COPY flow_assets ./flow_assets
RUN pip install --no-cache-dir . && mkdir -p "$DAGSTER_HOME"

# The instance yaml (deploy/dagster.postgres.yaml or deploy/dagster.ecs.yaml) is mounted or
# copied to $DAGSTER_HOME/dagster.yaml at deploy time; its secrets come from env.
EXPOSE 4000
CMD ["dagster", "api", "grpc", "-m", "flow_assets.definitions", "-h", "0.0.0.0", "-p", "4000"]
