# The shielding service image: the worker by default (`shielding worker`), and the same image runs the
# one-shot migration (`shielding migrate`) and the Web UI's codec endpoint (`shielding codec-server`).
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
        --shell /usr/sbin/nologin shielding

USER shielding
WORKDIR /home/shielding

# The codec server's port (`shielding codec-server --host 0.0.0.0 --port 8081`).
EXPOSE 8081

CMD ["shielding", "worker"]
