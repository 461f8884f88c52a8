# edgews-lua in a container (README: Deploying, Docker).
#
#   docker build -t edgews-lua .
#   docker run --rm -p 8080:8080 -v "$PWD/myapp:/app:ro" -v edgews-data:/data edgews-lua
#
# Stage 1 builds on Debian 12 with the packages scripts/deps installs for a build and
# the steps of scripts/build release, then `cmake --install`s into /opt/edgews-lua.
# Stage 2 is Debian 12 slim with only the run-time libraries, the installation in
# /usr/local (the binary finds its Lua modules in /usr/local/share/lua/5.1) and a
# non-root user. spec/integration/docker_spec.lua checks this file against the
# build (packages, libraries, steps, the command line) and builds the image when a
# Docker daemon is available.

FROM debian:12-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config \
      libluajit-5.1-dev libuv1-dev libmbedtls-dev zlib1g-dev libdeflate-dev libsqlite3-dev libhiredis-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt README.md ./
COPY core core
COPY lua lua
COPY client client
COPY examples examples
COPY bench bench
COPY scripts scripts
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release \
 && cmake --build build -j"$(nproc)" --target edgews-lua edgews_ratelimit \
 && cmake --install build --prefix /opt/edgews-lua

FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libluajit-5.1-2 libuv1 libmbedtls14 libmbedx509-1 libmbedcrypto7 zlib1g libdeflate0 libsqlite3-0 libhiredis0.14 \
      lua-cjson \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --user-group --home-dir /data --shell /usr/sbin/nologin edgews \
 && mkdir -p /data /app \
 && chown edgews:edgews /data \
 && chmod 0750 /data
COPY --from=build /opt/edgews-lua/ /usr/local/
COPY examples/echo/app.lua /app/app.lua
USER edgews
WORKDIR /data
VOLUME /data
# 8080: the WebSocket port; 9090: /health and /metrics (publish it privately only)
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9090 && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["edgews-lua", "--listen", "0.0.0.0:8080", "--admin-listen", "0.0.0.0:9090", "--data", "/data", "--no-watch"]
CMD ["/app/app.lua"]
