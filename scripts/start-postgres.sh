#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on 127.0.0.1 (tests, CI, benchmarks) and print, for `source`:
#   export CDS_TEST_POSTGRES_URL='postgresql://postgres:...@127.0.0.1:PORT/postgres'
#   export CDS_TEST_PG_DIR='DIR'
#
#   scripts/start-postgres.sh [DIR] > pg.env && source pg.env   # installs postgresql if missing (root)
#   .venv/bin/python -m pytest tests/feedback                    # uses CDS_TEST_POSTGRES_URL
#   scripts/start-postgres.sh --stop "$CDS_TEST_PG_DIR"          # stop it and delete DIR
#
# DIR (default: a new /tmp/cds-pg.XXXXXX) holds the cluster, the socket, the log and `url` (the URL).
# Env: PGPORT (default: a free port), CDS_PG_FSYNC=off for faster throwaway test servers.
# The server refuses to run as root, so as root it runs as the `postgres` user.
set -euo pipefail

as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

if [ "${1:-}" = "--stop" ]; then
  dir=${2:?usage: $0 --stop DIR}
  bin=$(bindir)
  as_postgres "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
  rm -rf "$dir"
  exit 0
fi

if [ -z "$(bindir)" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "PostgreSQL is not installed; run: sudo apt-get install -y postgresql" >&2
    exit 1
  fi
  echo "installing postgresql (Debian package)..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
bin=$(bindir)

dir=${1:-$(mktemp -d /tmp/cds-pg.XXXXXX)}
mkdir -p "$dir"
port=${PGPORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
password=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s\n' "$password" > "$dir/pwfile"
if [ "$(id -u)" = 0 ]; then chown -R postgres "$dir"; fi
chmod 700 "$dir"
if ! as_postgres test -w "$dir"; then
  echo "the postgres user cannot write $dir: use a directory whose parents it can enter (e.g. under /tmp)" >&2
  exit 1
fi

as_postgres "$bin/initdb" -D "$dir/data" -U postgres -E UTF8 --auth=scram-sha-256 --pwfile="$dir/pwfile" >"$dir/initdb.log"
rm -f "$dir/pwfile"
opts="-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200"
if [ "${CDS_PG_FSYNC:-on}" = off ]; then opts="$opts -c fsync=off -c full_page_writes=off"; fi
as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 -o "$opts" start >&2

url="postgresql://postgres:$password@127.0.0.1:$port/postgres"
printf '%s\n' "$url" > "$dir/url"
printf "export CDS_TEST_POSTGRES_URL='%s'\nexport CDS_TEST_PG_DIR='%s'\n" "$url" "$dir"
