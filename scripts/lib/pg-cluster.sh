# shellcheck shell=bash
# Sourced by scripts/test and scripts/bench-cdc: a PostgreSQL cluster of our own (initdb,
# pg_ctl) on a free port with its data in a temporary directory, wal_level=logical and
# password authentication, stopped and removed when the sourcing script exits. Debian's
# server packages are installed when missing; the machine's own database services are never
# touched.
#
# Needs: WEIR_PYTHON (any python3, to find a free port). Sets PG_BIN, PG_DIR, PG_PORT and
# exports WEIR_TEST_PG_URL (postgres://weir:<random password>@127.0.0.1:<port>/postgres),
# WEIR_TEST_PG_PASSWORDS=1, WEIR_TEST_PG_BIN, WEIR_TEST_PG_DATA, WEIR_TEST_PG_PORT.
start_pg_cluster() {
    PG_BIN="${WEIR_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}"
    local sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then
        sudo=(sudo -n)
    fi
    if [[ -z "$PG_BIN" || ! -x "$PG_BIN/initdb" ]]; then
        echo "installing Debian's PostgreSQL server"
        export DEBIAN_FRONTEND=noninteractive
        "${sudo[@]}" apt-get update
        "${sudo[@]}" apt-get install -y --no-install-recommends postgresql
        PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
    fi
    PG_DIR="$(mktemp -d /tmp/weir-pg.XXXXXX)"
    PG_PORT="$("${WEIR_PYTHON:-python3}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    local password
    password="weir-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
    AS_PG=()
    if [[ "$(id -u)" -eq 0 ]]; then
        # initdb refuses to run as root; Debian's package made the postgres user.
        chown postgres "$PG_DIR"
        AS_PG=(runuser -u postgres --)
    fi
    printf '%s\n' "$password" >"$PG_DIR/pw"
    "${AS_PG[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U weir --pwfile="$PG_DIR/pw" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-sync >"$PG_DIR/initdb.log"
    rm -f "$PG_DIR/pw"
    trap stop_pg_cluster EXIT
    "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 start \
        -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$PG_DIR -c wal_level=logical -c max_replication_slots=32 -c max_wal_senders=32 -c fsync=off $*"
    export WEIR_TEST_PG_URL="postgres://weir:$password@127.0.0.1:$PG_PORT/postgres"
    export WEIR_TEST_PG_PASSWORDS=1 WEIR_TEST_PG_BIN="$PG_BIN" WEIR_TEST_PG_DATA="$PG_DIR/data" WEIR_TEST_PG_PORT="$PG_PORT"
    echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT, data in $PG_DIR/data"
}

stop_pg_cluster() {
    "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
}
