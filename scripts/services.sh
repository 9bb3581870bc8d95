#!/usr/bin/env bash
# Throwaway backing services for a local cluster, all on loopback and all under one folder:
# two PostgreSQL 15 clusters (pg1, pg2: the two shards), Redis and NATS with JetStream.
#
#   bash scripts/services.sh up DIR                  install what is missing, start all four, write DIR/services.env
#   bash scripts/services.sh down DIR                stop all four (data stays in DIR)
#   bash scripts/services.sh stop DIR NAME           stop one: pg1 | pg2 | redis | nats (abruptly, for fault tests)
#   bash scripts/services.sh start DIR NAME [--wipe] start one again on its recorded port; --wipe empties its state
#   bash scripts/services.sh status DIR              print which are up (exit 1 when any is down)
#
# DIR/services.env is sourceable (export lines): SWITCHBOARD_SHARD1, SWITCHBOARD_SHARD2, SWITCHBOARD_REDIS,
# SWITCHBOARD_NATS, SWITCHBOARD_PG_PASSWORD, PG1_PORT, PG2_PORT, REDIS_PORT, NATS_PORT, NATS_MON_PORT, SERVICES_DIR.
# Layout: DIR/pg1/{data,postgres.log,.s.PGSQL.*} DIR/pg2/… DIR/redis/redis.log DIR/nats/{js,nats.log} DIR/<name>.pid
#
# Sourcing this file only defines the functions (svc_up, svc_down, svc_stop, svc_start, svc_status, …).
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin
SVC_NAMES=(pg1 pg2 redis nats)
READY_TIMEOUT=30 # seconds to wait for a service to come up or go away

svc_die() { echo "services.sh: $*" >&2; exit 1; }

svc_usage() {
    cat >&2 <<'EOF'
usage: services.sh up DIR
       services.sh down DIR
       services.sh stop DIR pg1|pg2|redis|nats
       services.sh start DIR pg1|pg2|redis|nats [--wipe]
       services.sh status DIR
EOF
    exit 2
}

# ---------------------------------------------------------------------------------------------------------------
# Small helpers

# True when something listens on 127.0.0.1:$1.
svc_port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# svc_pick_port VAR: a random port in 20000–31999 (below the ephemeral range, 32768 up, so no outgoing connection
# takes it between the check and the bind) that nothing listens on and that this run has not handed out yet.
SVC_TAKEN_PORTS=" "
svc_pick_port() {
    local p tries
    for ((tries = 0; tries < 200; tries++)); do
        p=$((20000 + RANDOM % 12000))
        [[ $SVC_TAKEN_PORTS == *" $p "* ]] && continue
        svc_port_in_use "$p" && continue
        SVC_TAKEN_PORTS+="$p "
        printf -v "$1" '%s' "$p"
        return 0
    done
    svc_die "no free loopback port found in 20000-31999"
}

# True when PID $1 is a live (not zombie) process whose command line contains $2.
svc_pid_alive() {
    local pid=$1 pattern=${2:-} stat state cmd
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    state=${stat##*) }
    state=${state%% *}
    # A zombie leader whose other threads still exit (and still hold its sockets) counts as alive.
    if [[ $state == Z || $state == X ]]; then
        local tasks=("/proc/$pid/task/"*)
        ((${#tasks[@]} > 1)) || return 1
        return 0
    fi
    if [[ -n $pattern ]]; then
        cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
        [[ $cmd == *"$pattern"* ]] || return 1
    fi
}

# svc_wait_gone PID SECONDS: wait until the process is gone; false on timeout.
svc_wait_gone() {
    local pid=$1 deadline=$((SECONDS + $2))
    while svc_pid_alive "$pid"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# What a service's process looks like on its command line (guards against a recycled PID).
svc_pattern() {
    case $1 in
        pg1 | pg2) echo "$PG_BIN/postgres" ;;
        redis) echo redis-server ;;
        nats) echo nats-server ;;
    esac
}

# The recorded PID of a service if it is running, else empty.
svc_running_pid() {
    local dir=$1 name=$2 pid=""
    if [[ $name == pg* && -f $dir/$name/data/postmaster.pid ]]; then
        pid=$(head -n1 "$dir/$name/data/postmaster.pid")
    elif [[ -f $dir/$name.pid ]]; then
        pid=$(<"$dir/$name.pid")
    fi
    if [[ -n $pid ]] && svc_pid_alive "$pid" "$(svc_pattern "$name")"; then echo "$pid"; fi
}

svc_port_of() {
    case $1 in
        pg1) echo "$PG1_PORT" ;;
        pg2) echo "$PG2_PORT" ;;
        redis) echo "$REDIS_PORT" ;;
        nats) echo "$NATS_PORT" ;;
    esac
}

svc_label() {
    case $1 in
        pg1) echo "postgres shard 1" ;;
        pg2) echo "postgres shard 2" ;;
        redis) echo "redis" ;;
        nats) echo "nats (jetstream)" ;;
    esac
}

svc_check_name() {
    case ${1:-} in pg1 | pg2 | redis | nats) ;; *) svc_usage ;; esac
}

# Run a command as the postgres user from a directory it can enter.
svc_as_postgres() { (cd / && runuser -u postgres -- "$@"); }

svc_load_env() {
    local dir=$1
    [[ -f $dir/services.env ]] || svc_die "$dir/services.env not found (run: services.sh up $dir)"
    # shellcheck disable=SC1091
    source "$dir/services.env"
}

# ---------------------------------------------------------------------------------------------------------------
# Installation

svc_install() {
    local missing=()
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v redis-cli >/dev/null || missing+=(redis-tools)
    command -v nats-server >/dev/null || missing+=(nats-server)
    command -v curl >/dev/null || missing+=(curl)
    [[ -x $PG_BIN/initdb ]] || missing+=(postgresql-15)
    command -v runuser >/dev/null || missing+=(util-linux)
    ((${#missing[@]} == 0)) && return 0

    [[ $EUID -eq 0 ]] || svc_die "missing ${missing[*]}; run as root to install them"
    echo "installing ${missing[*]}" >&2
    # Package scripts must not start system-wide instances (redis on 6379, a postgres 'main' cluster): a
    # policy-rc.d that refuses is put in place for the install when there is none.
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=1
    fi
    # apt-get update only when apt does not know the packages yet.
    if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
        apt-get update
    fi
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=600 --no-install-recommends \
        "${missing[@]}" || rc=$?
    ((own_policy)) && rm -f "$policy"
    ((rc == 0)) || svc_die "apt-get install ${missing[*]} failed (exit $rc)"
    [[ -x $PG_BIN/initdb ]] || svc_die "$PG_BIN/initdb still missing after install"
}

# ---------------------------------------------------------------------------------------------------------------
# Starting one service (on the port in the loaded services.env); returns once it is ready.

svc_pg_init() {
    local dir=$1 name=$2 home=$1/$2
    mkdir -p "$home"
    rm -rf "$home/data"
    chown postgres:postgres "$home"
    chmod 700 "$home"
    # initdb takes the superuser's password from a file only postgres can read; it is removed right after.
    local pwfile=$home/pwfile
    (umask 077 && printf '%s\n' "$SWITCHBOARD_PG_PASSWORD" >"$pwfile")
    chown postgres:postgres "$pwfile"
    if ! svc_as_postgres "$PG_BIN/initdb" -D "$home/data" -U postgres --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$home/initdb.log" 2>&1; then
        rm -f "$pwfile"
        cat "$home/initdb.log" >&2
        svc_die "initdb of $name failed"
    fi
    rm -f "$pwfile"
}

svc_pg_start() {
    local dir=$1 name=$2 home=$1/$2 port
    port=$(svc_port_of "$name")
    [[ -f $home/data/PG_VERSION ]] || svc_pg_init "$dir" "$name"
    # A stale postmaster.pid (after a kill) is handled by postgres itself.
    if ! svc_as_postgres "$PG_BIN/pg_ctl" -D "$home/data" -l "$home/postgres.log" -w -t "$READY_TIMEOUT" start \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $home -c max_connections=200" >/dev/null; then
        tail -n 30 "$home/postgres.log" >&2 || true
        svc_die "$name did not start on 127.0.0.1:$port within ${READY_TIMEOUT}s (log: $home/postgres.log)"
    fi
    # The database the server uses; created once per cluster.
    if [[ -z $(svc_as_postgres "$PG_BIN/psql" -h "$home" -p "$port" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'switchboard'") ]]; then
        svc_as_postgres "$PG_BIN/createdb" -h "$home" -p "$port" -U postgres switchboard
    fi
    head -n1 "$home/data/postmaster.pid" >"$dir/$name.pid"
}

svc_redis_start() {
    local dir=$1
    mkdir -p "$dir/redis"
    setsid redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$dir/redis" --save '' --appendonly no \
        --daemonize no --logfile "$dir/redis/redis.log" </dev/null >>"$dir/redis/redis.out" 2>&1 &
    local pid=$!
    echo "$pid" >"$dir/redis.pid"
    local deadline=$((SECONDS + READY_TIMEOUT))
    until [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; do
        if ! svc_pid_alive "$pid" || ((SECONDS >= deadline)); then
            tail -n 30 "$dir/redis/redis.log" "$dir/redis/redis.out" >&2 2>/dev/null || true
            svc_die "redis did not start on 127.0.0.1:$REDIS_PORT (log: $dir/redis/redis.log)"
        fi
        sleep 0.1
    done
}

svc_nats_start() {
    local dir=$1
    mkdir -p "$dir/nats/js"
    setsid nats-server -a 127.0.0.1 -p "$NATS_PORT" -m "$NATS_MON_PORT" -js -sd "$dir/nats/js" \
        -l "$dir/nats/nats.log" </dev/null >>"$dir/nats/nats.out" 2>&1 &
    local pid=$!
    echo "$pid" >"$dir/nats.pid"
    local deadline=$((SECONDS + READY_TIMEOUT))
    until curl -sf -o /dev/null "http://127.0.0.1:$NATS_MON_PORT/healthz?js-enabled-only=true"; do
        if ! svc_pid_alive "$pid" || ((SECONDS >= deadline)); then
            tail -n 30 "$dir/nats/nats.log" "$dir/nats/nats.out" >&2 2>/dev/null || true
            svc_die "nats did not start on 127.0.0.1:$NATS_PORT (log: $dir/nats/nats.log)"
        fi
        sleep 0.1
    done
}

# svc_start_one DIR NAME: start it unless it runs already; the port must be free.
svc_start_one() {
    local dir=$1 name=$2 port pid
    port=$(svc_port_of "$name")
    pid=$(svc_running_pid "$dir" "$name")
    if [[ -n $pid ]]; then
        echo "$(svc_label "$name") already running on 127.0.0.1:$port (pid $pid)"
        return 0
    fi
    # A process killed a moment ago may hold its port a little longer: give it a few seconds.
    local deadline=$((SECONDS + 5))
    while svc_port_in_use "$port" || { [[ $name == nats ]] && svc_port_in_use "$NATS_MON_PORT"; }; do
        ((SECONDS < deadline)) || svc_die "port 127.0.0.1:$port of $name (or the nats monitoring port) is taken by another process"
        sleep 0.2
    done
    case $name in
        pg1 | pg2) svc_pg_start "$dir" "$name" ;;
        redis) svc_redis_start "$dir" ;;
        nats) svc_nats_start "$dir" ;;
    esac
    echo "$(svc_label "$name") on 127.0.0.1:$port (pid $(<"$dir/$name.pid"))"
}

# ---------------------------------------------------------------------------------------------------------------
# Stopping one service. MODE: graceful (down) or abrupt (stop, for fault tests). Already stopped is fine.

svc_stop_one() {
    local dir=$1 name=$2 mode=$3 pid
    pid=$(svc_running_pid "$dir" "$name")
    [[ -n $pid ]] || return 0
    case $name in
        pg1 | pg2)
            local how=fast
            [[ $mode == abrupt ]] && how=immediate
            svc_as_postgres "$PG_BIN/pg_ctl" -D "$dir/$name/data" -m "$how" -w -t "$READY_TIMEOUT" stop >/dev/null 2>&1 ||
                kill -KILL "$pid" 2>/dev/null || true
            ;;
        redis | nats)
            if [[ $mode == abrupt ]]; then kill -KILL "$pid" 2>/dev/null || true; else kill -TERM "$pid" 2>/dev/null || true; fi
            ;;
    esac
    if ! svc_wait_gone "$pid" "$READY_TIMEOUT"; then
        kill -KILL "$pid" 2>/dev/null || true
        svc_wait_gone "$pid" 10 || svc_die "$name (pid $pid) did not stop"
    fi
    echo "$(svc_label "$name") stopped (pid $pid)"
}

# ---------------------------------------------------------------------------------------------------------------
# Commands

svc_up() {
    local dir=$1
    svc_install
    mkdir -p "$dir"
    dir=$(realpath "$dir")

    if [[ -f $dir/services.env ]]; then
        # Already set up once: bring back whatever is down, on the recorded ports.
        svc_load_env "$dir"
        local all_up=1 name
        for name in "${SVC_NAMES[@]}"; do [[ -n $(svc_running_pid "$dir" "$name") ]] || all_up=0; done
        if ((all_up)); then
            echo "services in $dir are already up"
            svc_status "$dir"
            return 0
        fi
    else
        # postgres runs as its own user: it must be able to enter DIR (mktemp folders are 0700) and its parents.
        chmod 755 "$dir"
        local d=$dir
        while [[ $d != / ]]; do
            d=$(dirname "$d")
            svc_as_postgres test -x "$d" || chmod o+x "$d"
        done
        local p1 p2 pr pn pm pw
        svc_pick_port p1
        svc_pick_port p2
        svc_pick_port pr
        svc_pick_port pn
        svc_pick_port pm
        pw=$(head -c 64 /dev/urandom | base64 -w0 | tr -dc 'A-Za-z0-9' | cut -c1-24)
        cat >"$dir/services.env" <<EOF
# Written by scripts/services.sh up; source it.
export SERVICES_DIR="$dir"
export PG1_PORT=$p1
export PG2_PORT=$p2
export REDIS_PORT=$pr
export NATS_PORT=$pn
export NATS_MON_PORT=$pm
export SWITCHBOARD_PG_PASSWORD="$pw"
export SWITCHBOARD_SHARD1="Host=127.0.0.1;Port=$p1;Username=postgres;Password=$pw;Database=switchboard"
export SWITCHBOARD_SHARD2="Host=127.0.0.1;Port=$p2;Username=postgres;Password=$pw;Database=switchboard"
export SWITCHBOARD_REDIS="127.0.0.1:$pr"
export SWITCHBOARD_NATS="nats://127.0.0.1:$pn"
EOF
        svc_load_env "$dir"
    fi

    # If one fails to start, stop the ones this run started so nothing is left behind.
    SVC_STARTED=()
    SVC_UP_DIR=$dir
    trap svc_up_failed EXIT
    local name
    for name in "${SVC_NAMES[@]}"; do
        [[ -n $(svc_running_pid "$dir" "$name") ]] || SVC_STARTED+=("$name")
        svc_start_one "$dir" "$name"
    done
    trap - EXIT
}

# EXIT trap of a failing `up`: stop what that run started, so nothing is left behind.
svc_up_failed() {
    local rc=$? n
    ((rc)) || return 0
    echo "services.sh: up failed; stopping what it started" >&2
    for n in "${SVC_STARTED[@]}"; do svc_stop_one "$SVC_UP_DIR" "$n" graceful >/dev/null 2>&1 || true; done
    exit "$rc"
}

svc_down() {
    local dir
    dir=$(realpath -m "$1")
    if [[ ! -f $dir/services.env ]]; then
        echo "no services in $dir"
        return 0
    fi
    svc_load_env "$dir"
    local name
    for name in "${SVC_NAMES[@]}"; do svc_stop_one "$dir" "$name" graceful; done
    echo "services in $dir are down (data kept)"
}

svc_stop() {
    local dir
    dir=$(realpath -m "$1")
    svc_load_env "$dir"
    if [[ -z $(svc_running_pid "$dir" "$2") ]]; then
        echo "$(svc_label "$2") is not running"
        return 0
    fi
    svc_stop_one "$dir" "$2" abrupt
}

svc_start() {
    local dir name=$2 wipe=${3:-}
    dir=$(realpath -m "$1")
    svc_load_env "$dir"
    if [[ $wipe == --wipe ]]; then
        [[ -z $(svc_running_pid "$dir" "$name") ]] || svc_die "$name is running; stop it before --wipe"
        case $name in
            pg1 | pg2) rm -rf "${dir:?}/$name/data" ;; # initdb again, same password and port
            redis) ;;                                  # no persistence: nothing to empty
            nats) rm -rf "${dir:?}/nats/js" ;;
        esac
    elif [[ -n $wipe ]]; then
        svc_usage
    fi
    svc_start_one "$dir" "$name"
}

svc_status() {
    local dir
    dir=$(realpath -m "$1")
    svc_load_env "$dir"
    local name pid rc=0
    for name in "${SVC_NAMES[@]}"; do
        pid=$(svc_running_pid "$dir" "$name")
        if [[ -n $pid ]]; then
            printf "%-5s up   127.0.0.1:%s (pid %s)\n" "$name" "$(svc_port_of "$name")" "$pid"
        else
            printf "%-5s down 127.0.0.1:%s\n" "$name" "$(svc_port_of "$name")"
            rc=1
        fi
    done
    return $rc
}

svc_main() {
    local cmd=${1:-} dir=${2:-}
    [[ -n $cmd && -n $dir ]] || svc_usage
    case $cmd in
        up) (($# == 2)) || svc_usage; svc_up "$dir" ;;
        down) (($# == 2)) || svc_usage; svc_down "$dir" ;;
        status) (($# == 2)) || svc_usage; svc_status "$dir" ;;
        stop) (($# == 3)) || svc_usage; svc_check_name "$3"; svc_stop "$dir" "$3" ;;
        start) (($# == 3 || $# == 4)) || svc_usage; svc_check_name "$3"; svc_start "$dir" "$3" "${4:-}" ;;
        *) svc_usage ;;
    esac
}

# Run the CLI unless sourced.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    svc_main "$@"
fi
