# CPU by default; for CUDA:  docker build --build-arg BASE=pytorch/pytorch:2.6.0-cuda12.4-cudnn9-runtime .
ARG BASE=python:3.11-slim
FROM ${BASE}
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
WORKDIR /app
COPY pyproject.toml README.md ./
COPY lightning_nas ./lightning_nas
COPY configs ./configs
RUN python -m pip install --no-cache-dir torch --index-url ${TORCH_INDEX} \
 && python -m pip install --no-cache-dir -e ".[test]"
# benchmark tables are mounted at run time:  -v /path/to/shared:/shared
ENTRYPOINT ["lightning-nas"]
