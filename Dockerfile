# syntax=docker/dockerfile:1
# The image the Helm chart runs (helm/shardq, image.repository): shardq,
# shardq-broker, shardq-scheduler, shardq-worker, shardq-group and
# shardq-model in /usr/bin, the nightly LoRA job in /usr/share/shardq, the
# bundled model in /models, running as the non-root user shardq (uid 10001,
# the chart's podSecurityContext).
#
#   docker build -t shardq/shardq:0.1.0 .                                # CPU
#   docker build --build-arg CUDA=13-0 -t shardq/shardq:0.1.0-cuda .    # with the CUDA backend
#
# Both stages are Debian 12, the system scripts/deps.sh installs and CI
# tests. With CUDA=13-0 the build stage adds nvcc, cuBLAS and NCCL from
# NVIDIA's Debian 12 repository and the image adds their runtime libraries;
# the GPU driver comes from the node (NVIDIA container toolkit), and the
# binaries start without one (--device auto then runs on the CPU).
# What goes into the image is `cmake --install` (tests/install/check.sh
# checks that tree on every CI run). No container engine runs in CI:
# tests/image/rehearse.sh (ctest image.rehearse) carries out this file's
# instructions in debootstrap roots and runs a job through the result.
# It understands ARG, FROM (debian:12, debian:12-slim), COPY, COPY --from,
# RUN, ENV (NAME=VALUE), USER and WORKDIR: keep to those, or teach it.

ARG CUDA=""

FROM debian:12 AS build
ARG CUDA
COPY scripts/deps.sh scripts/cuda-apt.sh /src/scripts/
RUN /src/scripts/deps.sh && /src/scripts/cuda-apt.sh "$CUDA" dev
COPY . /src
# (NVIDIA's packages put the toolkit in /usr/local/cuda-X.Y)
RUN if [ -n "$CUDA" ]; then \
      cuda="-DSQ_WITH_CUDA=ON -DCUDAToolkit_ROOT=/usr/local/cuda-$(echo "$CUDA" | tr - .)"; \
    else cuda="-DSQ_WITH_CUDA=OFF"; fi \
 && cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release $cuda \
        -DCMAKE_CUDA_ARCHITECTURES="80;90" \
 && cmake --build /build --target shardq-broker shardq-cli shardq-worker shardq-scheduler shardq-model \
 && DESTDIR=/stage cmake --install /build --prefix /usr --strip

FROM debian:12-slim
ARG CUDA
COPY scripts/cuda-apt.sh /tmp/cuda-apt.sh
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        libczmq4 libzmq5 libpq5 libmsgpackc2 libjansson4 libyaml-0-2 libcurl4 \
        openmpi-bin libopenmpi3 ca-certificates bash \
 && /tmp/cuda-apt.sh "$CUDA" runtime \
 && rm -rf /var/lib/apt/lists/* /tmp/cuda-apt.sh
COPY --from=build /stage/ /
RUN mkdir -p /models /adapters \
 && cp /usr/share/shardq/models/*.gguf /models/ \
 && groupadd -g 10001 shardq && useradd -u 10001 -g 10001 -M -d /nonexistent -s /usr/sbin/nologin shardq \
 && chown shardq:shardq /adapters
# one node: mpirun without ssh, shared memory without cross-memory attach
# (the chart's worker pods set the same)
ENV OMPI_MCA_plm=isolated OMPI_MCA_btl_vader_single_copy_mechanism=none
USER 10001:10001
