# The Berth image: a release build on Debian 12, run as an unprivileged user on a slim base.
#   docker build -t berth .
# Ports: 1883 MQTT, 8080 HTTP (/metrics, /health), 7001 cluster (gRPC). Data: /var/lib/berth.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p berth && cp target/release/berth /usr/local/bin/berth

FROM debian:bookworm-slim
RUN useradd --system --uid 999 --user-group --home /var/lib/berth --create-home berth
COPY --from=build /usr/local/bin/berth /usr/local/bin/berth
USER berth
WORKDIR /var/lib/berth
EXPOSE 1883 8080 7001
ENTRYPOINT ["/usr/local/bin/berth", "--data-dir", "/var/lib/berth/data"]
