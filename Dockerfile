# escalation-bot: build the daemon, then run it on a slim Debian image.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin escalation-bot

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates tzdata && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /src/target/release/escalation-bot /usr/local/bin/escalation-bot
COPY config /app/config
COPY migrations /app/migrations
COPY templates /app/templates
VOLUME ["/app/data"]
ENTRYPOINT ["escalation-bot", "--config", "/app/config/default.toml"]
CMD ["run"]
