# escalation-bot: built in one stage, run from a small image in another.
#
#   docker build -t escalation-bot .
#   docker run --rm -v escalation-bot-data:/app/data escalation-bot            # the daemon, SQLite in /app/data
#   docker run --rm escalation-bot policy list                                 # any other subcommand
#
# deploy/README.md runs it with PostgreSQL and a demo mail server (docker compose).

# ---------------------------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src

# 1. Dependencies only, in a layer of their own: it is rebuilt only when Cargo.toml or Cargo.lock change, not on
#    every change to the bot's sources. Cargo refuses a manifest whose targets have no file, so the library, the
#    binary and every [[bench]] that Cargo.toml names get an empty stand-in (add one here for any [[bench]],
#    [[test]] or [[example]] Cargo.toml comes to name). The build script of a dependency (ring, the bundled
#    SQLite) needs only the C compiler that the rust image has.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/mail.rs \
    && echo 'fn main() {}' > benches/clock.rs \
    && cargo build --release --locked --bin escalation-bot \
    && rm -rf src

# 2. The bot itself. Its templates and migrations are compiled in (include_str!, sqlx::migrate!), so they are
#    needed here and not in the runtime image. The stand-in's build products are removed so that Cargo cannot
#    take the stand-in for up to date (COPY keeps the files' own, possibly older, modification times); the
#    --version check fails the build if the stand-in (which prints nothing) was kept all the same.
COPY src ./src
COPY templates ./templates
COPY migrations ./migrations
RUN rm -rf target/release/.fingerprint/escalation-bot-* \
           target/release/deps/escalation_bot-* \
           target/release/deps/libescalation_bot-* \
           target/release/escalation-bot \
    && cargo build --release --locked --bin escalation-bot \
    && ./target/release/escalation-bot --version | grep -q '^escalation-bot '

# ---------------------------------------------------------------------------------------------------------------
# Run
# ---------------------------------------------------------------------------------------------------------------
# debian:bookworm-slim rather than distroless/cc: the same glibc (2.36) as the build image, and a shell, which the
# compose trial needs to turn secret files into the environment variables the bot reads without a *_FILE form
# (deploy/bot/with-secrets.sh: the IMAP and SMTP passwords), and which an operator needs to look around in the
# container. The bot needs nothing else: TLS is rustls with the webpki roots compiled in. ca-certificates (for
# anything an operator runs here) and tzdata (local time in `date` and the like; the bot's own time zones are
# compiled in) are the only packages added.
FROM debian:bookworm-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/*

# A fixed, unprivileged uid/gid, so that a volume's or a secret file's ownership can be given to it on the host.
RUN groupadd --system --gid 10001 escalation-bot \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin escalation-bot

COPY --from=build /src/target/release/escalation-bot /usr/local/bin/escalation-bot

WORKDIR /app
# The shipped configuration (config/: boards, policies, directories), and over its default.toml the image's own
# (deploy/docker/default.toml): the same embedded default, SQLite and mailbox folders under /app/data, with the
# [http] listener on, so that the health check below has something to ask. Mount another folder on /app/config
# to configure the bot (deploy/config/ in docker-compose.yml).
COPY config /app/config
COPY deploy/docker/default.toml /app/config/default.toml
# Everything the bot writes (database, local mailboxes, outbox, signing secret) is here, for its user only.
RUN mkdir -p /app/data && chown 10001:10001 /app/data && chmod 0700 /app/data
VOLUME ["/app/data"]

# Every subcommand finds the configuration without --config (also `docker exec … escalation-bot cases list`).
ENV ESCALATION_BOT_CONFIG=/app/config/default.toml \
    ESCALATION_BOT_LOG=info

USER 10001:10001

# /healthz and /metrics ([http] listen in the configuration).
EXPOSE 9187

# No curl in this image: the binary asks its own /healthz (the [http] listen address of the configuration) and
# exits 0 on 200, 1 otherwise.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s CMD ["escalation-bot", "--config", "/app/config/default.toml", "health"]

# SIGTERM (docker stop) makes the daemon finish the batch in hand and stop within 15 s: longer than docker stop's
# default 10 s, so give it 30 (docker stop -t 30; stop_grace_period: 30s in compose).
STOPSIGNAL SIGTERM
ENTRYPOINT ["escalation-bot"]
CMD ["run"]
