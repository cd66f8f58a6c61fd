# One image for every process of the stack:
#   api         (default CMD) uvicorn --factory setaccounts_api.app:create_app
#   propagator  python -m setaccounts_propagator run --role all
#   topics      python -m setaccounts_propagator create-topics

ARG PYTHON_IMAGE=python:3.11-slim

# --- build stage: install the project (no dev extras) into a virtualenv ------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:${PATH}"

WORKDIR /src
# .dockerignore keeps tests, docs, VCS data and local environments out.
COPY . .
RUN pip install . \
 && python -c "import setaccounts, setaccounts_api, setaccounts_propagator"

# --- runtime stage ----------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH="/opt/venv/bin:${PATH}"

RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin app

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
USER 10001:10001

EXPOSE 8000

CMD ["uvicorn", "--factory", "setaccounts_api.app:create_app", "--host", "0.0.0.0", "--port", "8000", "--no-server-header"]
