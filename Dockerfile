# The `embodied` CLI on CPU: train, evaluate, export and deploy camera navigation policies.
#   docker build -t embodied .
#   docker run --rm -v "$PWD/runs:/app/runs" embodied train --config quickstart
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_WAIT_POLICY=PASSIVE \
    MPLBACKEND=Agg

WORKDIR /app

# CPU-only torch from PyTorch's index, in its own layer: the PyPI wheel brings the CUDA
# libraries (several GB), and this layer stays cached while the project changes.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

COPY . .
# torch==2.13.0 in pyproject is already met by 2.13.0+cpu, so pip keeps the CPU build.
RUN pip install . \
    && useradd --create-home --uid 1000 robot \
    && mkdir -p runs \
    && chown -R robot /app

USER robot
ENTRYPOINT ["embodied"]
CMD ["--help"]
