# The shielding service image: the worker by default (`shielding worker`), and the same image runs the
# web service (`shielding serve`, which also serves the Temporal Web UI's codec endpoint at /codec) and the
# one-shot migration (`shielding migrate`).
# The pages' stylesheet and assets: built from web/frontend's lock file, the only stage with Node.
FROM node:20.19.5-bookworm-slim AS frontend
WORKDIR /src/web/frontend
COPY web/frontend/ ./
RUN npm ci --no-audit --no-fund && npm run --silent build && npm prune --omit=dev

FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

WORKDIR /src

# Runtime dependencies first, in their own layer, so a code change does not reinstall them.
# (Only [project] dependencies: the test extras are never installed in the image.)
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Only the packages the project ships (no .venv, .data or tests in the image).
COPY shielding ./shielding
COPY cli ./cli
COPY web ./web
COPY --from=frontend /src/web/frontend/build ./web/frontend/build
COPY --from=frontend /src/web/frontend/node_modules ./web/frontend/node_modules
COPY workflows ./workflows
COPY activities ./activities
COPY worker ./worker
COPY starter ./starter
COPY bench ./bench
RUN pip install . \
    && cd / \
    && rm -rf /src

RUN groupadd --system --gid 10001 shielding \
    && useradd --system --uid 10001 --gid shielding --create-home --home-dir /home/shielding \
        --shell /usr/sbin/nologin shielding \
    && install -d -o shielding -g shielding -m 0700 /var/lib/shielding/anchor

USER shielding
WORKDIR /home/shielding

# The web service (`shielding serve`).
EXPOSE 8000

CMD ["shielding", "worker"]
