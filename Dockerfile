# tapedeck: a record/replay proxy for AI agents.
# Build:  docker build -t tapedeck .
# (mirrors the README's build: cargo build --release --bin tapedeck)
#
# Inside the container tapedeck listens on 0.0.0.0:8080, which others can reach, so it
# starts only with --allow-remote and proxy credentials (README, "Security model"). This
# image sets both up: TAPEDECK_ALLOW_REMOTE=true and the credentials file
# /run/secrets/tapedeck-proxy-auth (one USER:PASS line), which you provide:
#
#   printf 'agent:%s\n' "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" > proxy-auth
#   chmod 600 proxy-auth
#   docker run -p 127.0.0.1:8080:8080 \
#     -v $PWD/recordings:/recordings -v $PWD/certs:/certs \
#     -v $PWD/proxy-auth:/run/secrets/tapedeck-proxy-auth:ro tapedeck
#
# Clients then use HTTPS_PROXY=http://agent:PASSWORD@127.0.0.1:8080 (the user name
# "agent" records into the daemon's own session; SESSION:PASSWORD names a session) and
# trust certs/ca.pem. Without the file the container exits with an error that names it.
# Read commands run inside the container (docker exec ... tapedeck sessions) and ask the
# daemon with the store's control token, /recordings/control.token.

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
    TAPEDECK_LISTEN=0.0.0.0:8080 \
    TAPEDECK_ALLOW_REMOTE=true \
    TAPEDECK_PROXY_AUTH_FILE=/run/secrets/tapedeck-proxy-auth
VOLUME ["/recordings", "/certs"]
EXPOSE 8080
ENTRYPOINT ["tapedeck"]
CMD ["record"]
