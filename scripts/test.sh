#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs and starts what the tests need, then checks
# formatting, lints and runs every test. This is the command README.md gives and .ci/run calls.
#
# Needs: a Rust toolchain (cargo) and python3 with pip. Installs and starts, when missing: PostgreSQL
# (Debian's package), on 127.0.0.1:5432 with trust authentication for local connections (set
# ESCALATION_BOT_TEST_PG to use another server: a URL of a database the tests may CREATE DATABASE from).
# Installs, when missing: Dovecot (Debian's dovecot-imapd and dovecot-lmtpd), aiosmtpd and cryptography (PyPI)
# and openssl; the tests start their own instances of these servers on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root (or sudo) to run: $*" >&2; return 1; fi
}

apt_install() {
  log "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  if [ -n "${ESCALATION_BOT_TEST_PG:-}" ]; then
    log "using PostgreSQL at ESCALATION_BOT_TEST_PG"
    return
  fi
  if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; then
    log "PostgreSQL is running on 127.0.0.1:5432"
  else
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
      apt_install postgresql
    fi
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    log "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 30); do
      pg_isready -q -h 127.0.0.1 -p 5432 && break
      sleep 1
    done
    pg_isready -h 127.0.0.1 -p 5432
  fi
  # The tests connect as postgres over TCP; make sure that is allowed without a password on loopback.
  if ! psql "postgres://postgres@127.0.0.1:5432/postgres" -qtAc 'select 1' >/dev/null 2>&1; then
    local version hba
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    log "allowing trust authentication on loopback in $hba (test machine only)"
    as_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    sleep 1
  fi
  if ! psql "postgres://postgres@127.0.0.1:5432/postgres" -qtAc "select 1 from pg_database where datname = 'test'" | grep -q 1; then
    psql "postgres://postgres@127.0.0.1:5432/postgres" -qc 'create database test'
  fi
  export ESCALATION_BOT_TEST_PG="postgres://postgres@127.0.0.1:5432/test"
}

ensure_mail_servers() {
  local need=()
  command -v dovecot >/dev/null || need+=(dovecot-imapd dovecot-lmtpd)
  [ -e /usr/lib/dovecot/lmtp ] || [[ " ${need[*]} " == *" dovecot-lmtpd "* ]] || need+=(dovecot-lmtpd)
  if ((${#need[@]})); then
    apt_install "${need[@]}"
  fi
  # The packaged service is not needed: each test starts its own Dovecot.
  if command -v systemctl >/dev/null && systemctl is-active --quiet dovecot 2>/dev/null; then
    as_root systemctl stop dovecot || true
  fi
  # The OAuth2 tests make certificates (openssl) and check client assertions signed with them (cryptography).
  command -v openssl >/dev/null || apt_install openssl
  if ! python3 -c 'import cryptography' 2>/dev/null; then
    log "installing cryptography (the tests' OAuth2 server checks signed client assertions)"
    python3 -m pip install --quiet --disable-pip-version-check cryptography 2>&1 | grep -v "Running pip as the 'root' user" || true
    python3 -c 'import cryptography'
  fi
  if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
    log "installing aiosmtpd (the tests' SMTP server)"
    python3 -m pip install --quiet --disable-pip-version-check aiosmtpd 2>&1 | grep -v "Running pip as the 'root' user" || true
    python3 -c 'import aiosmtpd'
  fi
  log "Dovecot $(dovecot --version | cut -d' ' -f1) and aiosmtpd are installed"
}

ensure_postgres
ensure_mail_servers

# `scripts/test.sh --setup`: install and start what the tests and benchmarks need, and stop there
# (before `cargo bench --bench mail`).
if [ "${1:-}" = "--setup" ]; then
  exit 0
fi

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy --all-targets -- -D warnings"
cargo clippy --quiet --all-targets -- -D warnings
log "cargo test"
cargo test --lib --bins --tests 2>&1 | tee target/test-output.txt
# One line with the totals, for CI logs.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' target/test-output.txt
