# tapedeck: a record/replay proxy for AI agents.
# Build:  docker build -t tapedeck .
# Run:    docker run -p 8080:8080 -v $PWD/recordings:/recordings -v $PWD/certs:/certs tapedeck
# (mirrors the README's build: cargo build --release --bin tapedeck)

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
COPY tests ./tests
RUN cargo build --release --locked --bin tapedeck

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/tapedeck /usr/local/bin/tapedeck
ENV TAPEDECK_STORE=/recordings \
    TAPEDECK_CERTS=/certs \
    TAPEDECK_LISTEN=0.0.0.0:8080
VOLUME ["/recordings", "/certs"]
EXPOSE 8080
ENTRYPOINT ["tapedeck"]
CMD ["record"]
