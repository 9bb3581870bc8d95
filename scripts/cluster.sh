#!/usr/bin/env bash
# A local Switchboard cluster in one command: the backing services (scripts/services.sh: two PostgreSQL shards,
# Redis, NATS JetStream) and N server nodes, all on loopback, all under DIR.
#
#   bash scripts/cluster.sh up --nodes N --dir DIR    start services and N nodes; returns once every node is ready
#   bash scripts/cluster.sh kill-node K --dir DIR     SIGKILL node K (1-based)
#   bash scripts/cluster.sh start-node K --dir DIR    start node K again (same port and settings); waits for /readyz
#   bash scripts/cluster.sh down --dir DIR            stop every node, then the services (data stays in DIR)
#
# Layout: DIR/services/ (services.sh, incl. services.env), DIR/bin/ (the published server, rebuilt only when a
# file under src/ is newer), DIR/node<K>/ (the node's DataDir, plus node.log, pid and env: its port and settings),
# DIR/nodes (one base URL per line, in node order).
#
# Environment:
#   SWITCHBOARD_NODE_ARGS             extra arguments appended to every node's command line (e.g.
#                                     "--Switchboard:Abuse:Enabled=false"), recorded at `up` for start-node.
#   SWITCHBOARD_CLUSTER_EMBEDDED_TEST=1  debugging aid: the nodes get no Switchboard__Cluster__* settings, so they
#                                     run as independent embedded-mode servers (services are still started).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
READY_TIMEOUT=60 # seconds for a node to answer /readyz
STOP_TIMEOUT=15  # seconds between SIGTERM and SIGKILL on `down`

die() { echo "cluster.sh: $*" >&2; exit 1; }

usage() {
    cat >&2 <<'EOF'
usage: cluster.sh up --nodes N --dir DIR
       cluster.sh kill-node K --dir DIR
       cluster.sh start-node K --dir DIR
       cluster.sh down --dir DIR
env:   SWITCHBOARD_NODE_ARGS="..."           extra server arguments for every node
       SWITCHBOARD_CLUSTER_EMBEDDED_TEST=1   debugging aid: nodes without Cluster settings (embedded mode)
EOF
    exit 2
}

# ---------------------------------------------------------------------------------------------------------------
# Helpers

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pick_port VAR: a random free loopback port in 20000–31999 (below the ephemeral range) not handed out by this run
# nor recorded by a node.
TAKEN_PORTS=" "
pick_port() {
    local p tries
    for ((tries = 0; tries < 200; tries++)); do
        p=$((20000 + RANDOM % 12000))
        [[ $TAKEN_PORTS == *" $p "* ]] && continue
        port_in_use "$p" && continue
        TAKEN_PORTS+="$p "
        printf -v "$1" '%s' "$p"
        return 0
    done
    die "no free loopback port found in 20000-31999"
}

# True when PID $1 is a live (not zombie) Switchboard server process (guards against a recycled PID).
node_pid_alive() {
    local pid=$1 stat state cmd
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
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmd == *Switchboard.Server.dll* ]]
}

# The port recorded for node K.
node_port() {
    # shellcheck disable=SC1090
    (source "$DIR/node$1/env" && echo "$NODE_PORT")
}

# The PID of node K if it runs, else empty.
node_pid() {
    local f=$DIR/node$1/pid pid
    [[ -f $f ]] || return 0
    pid=$(<"$f")
    if node_pid_alive "$pid"; then echo "$pid"; fi
}

wait_gone() {
    local pid=$1 deadline=$((SECONDS + $2))
    while node_pid_alive "$pid"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# The node numbers that have a folder under DIR, in order.
known_nodes() {
    local d
    for d in "$DIR"/node*/; do
        d=${d%/}
        d=${d##*/node}
        if [[ $d =~ ^[0-9]+$ ]]; then echo "$d"; fi
    done | sort -n
}

# ---------------------------------------------------------------------------------------------------------------
# Build

# Publish the server into DIR/bin unless the dll there is newer than every file under src/.
build() {
    local dll=$DIR/bin/Switchboard.Server.dll
    if [[ -f $dll && -z $(find "$REPO/src" \( -name bin -o -name obj \) -prune -o -type f -newer "$dll" -print -quit) ]]; then
        return 0
    fi
    echo "building the server into $DIR/bin"
    (cd "$REPO" && dotnet publish src/Switchboard.Server -c Release -o "$DIR/bin" --nologo -v q) ||
        die "dotnet publish failed"
    # An incremental publish may leave the dll's old time stamp: mark this build as current.
    touch "$dll"
}

# ---------------------------------------------------------------------------------------------------------------
# Nodes

# write_node_env K PORT: remember node K's port and settings in DIR/node<K>/env (sourced by start_node).
write_node_env() {
    local k=$1 port=$2 env=$DIR/node$1/env
    # shellcheck disable=SC1091
    source "$DIR/services/services.env"
    {
        echo "# Written by scripts/cluster.sh up: node $k's port and settings, reused by start-node."
        printf 'NODE_PORT=%q\n' "$port"
        printf 'NODE_ARGS=%q\n' "${SWITCHBOARD_NODE_ARGS:-}"
        printf 'export Switchboard__DataDir=%q\n' "$DIR/node$k"
        printf 'export Switchboard__NodeId=%q\n' "$k"
        if [[ ${SWITCHBOARD_CLUSTER_EMBEDDED_TEST:-} == 1 ]]; then
            echo "# SWITCHBOARD_CLUSTER_EMBEDDED_TEST=1: no Cluster settings, the node runs in embedded mode."
        else
            printf 'export Switchboard__Cluster__Enabled=%q\n' true
            printf 'export Switchboard__Cluster__Shards__0=%q\n' "$SWITCHBOARD_SHARD1"
            printf 'export Switchboard__Cluster__Shards__1=%q\n' "$SWITCHBOARD_SHARD2"
            printf 'export Switchboard__Cluster__Redis=%q\n' "$SWITCHBOARD_REDIS"
            printf 'export Switchboard__Cluster__Nats=%q\n' "$SWITCHBOARD_NATS"
        fi
    } >"$env"
}

# launch_node K: start node K detached (its own session, survives this script) and record its PID.
launch_node() {
    local k=$1 dir=$DIR/node$1 pid
    [[ -f $dir/env ]] || die "node $k has no settings ($dir/env); run: cluster.sh up --nodes N --dir $DIR"
    pid=$(node_pid "$k")
    if [[ -n $pid ]]; then
        echo "node $k already running (pid $pid)"
        return 0
    fi
    local port
    port=$(node_port "$k")
    # A node killed a moment ago may still hold its port while its last threads exit: give it a few seconds.
    local deadline=$((SECONDS + 5))
    while port_in_use "$port"; do
        ((SECONDS < deadline)) || die "port 127.0.0.1:$port of node $k is taken by another process"
        sleep 0.2
    done
    echo "--- $(date '+%F %T') starting node $k on 127.0.0.1:$port" >>"$dir/node.log"
    (
        # shellcheck disable=SC1091
        source "$dir/env"
        read -ra extra <<<"$NODE_ARGS"
        cd "$dir"
        exec setsid dotnet "$DIR/bin/Switchboard.Server.dll" --urls "http://127.0.0.1:$NODE_PORT" "${extra[@]}" \
            </dev/null >>"$dir/node.log" 2>&1
    ) &
    echo $! >"$dir/pid"
}

# wait_ready K: until node K answers /readyz; on timeout (or if it exits) show its log's tail and fail.
wait_ready() {
    local k=$1 dir=$DIR/node$1 port pid deadline=$((SECONDS + READY_TIMEOUT))
    port=$(node_port "$k")
    pid=$(<"$dir/pid")
    until curl -sf -o /dev/null --max-time 5 "http://127.0.0.1:$port/readyz"; do
        if ! node_pid_alive "$pid"; then
            echo "cluster.sh: node $k (pid $pid) exited before it was ready; last lines of $dir/node.log:" >&2
            tail -n 30 "$dir/node.log" >&2
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            echo "cluster.sh: node $k not ready on 127.0.0.1:$port after ${READY_TIMEOUT}s; last lines of $dir/node.log:" >&2
            tail -n 30 "$dir/node.log" >&2
            exit 1
        fi
        sleep 0.2
    done
}

# ---------------------------------------------------------------------------------------------------------------
# Commands

cmd_up() {
    # On failure, what is running stays up for a look at the logs; say how to stop it.
    trap 'if (($? != 0)); then echo "cluster.sh: up failed; what started is still running: cluster.sh down --dir $DIR stops it" >&2; fi' EXIT
    bash "$REPO/scripts/services.sh" up "$DIR/services"
    build

    # Ports: reuse a node's recorded port; hand out new ones that no other node has.
    local k port
    for k in $(known_nodes); do
        if [[ -f $DIR/node$k/env ]]; then TAKEN_PORTS+="$(node_port "$k") "; fi
    done
    : >"$DIR/nodes.tmp"
    for ((k = 1; k <= NODES; k++)); do
        mkdir -p "$DIR/node$k"
        if [[ -z $(node_pid "$k") ]]; then
            if [[ -f $DIR/node$k/env ]]; then
                port=$(node_port "$k")
            else
                pick_port port
            fi
            write_node_env "$k" "$port"
        fi
        launch_node "$k"
        echo "http://127.0.0.1:$(node_port "$k")" >>"$DIR/nodes.tmp"
    done
    mv "$DIR/nodes.tmp" "$DIR/nodes"

    for ((k = 1; k <= NODES; k++)); do wait_ready "$k"; done
    k=0
    while read -r url; do
        k=$((k + 1))
        echo "node $k: $url (pid $(<"$DIR/node$k/pid"))"
    done <"$DIR/nodes"
    trap - EXIT
}

cmd_kill_node() {
    local k=$1 pid
    [[ -d $DIR/node$k ]] || die "no node $k in $DIR"
    pid=$(node_pid "$k")
    if [[ -z $pid ]]; then
        echo "node $k is not running"
        return 0
    fi
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || die "node $k (pid $pid) is still there after SIGKILL"
    echo "node $k killed (pid $pid)"
}

cmd_start_node() {
    local k=$1
    [[ -f $DIR/node$k/env ]] || die "no node $k in $DIR (run: cluster.sh up --nodes N --dir $DIR)"
    [[ -f $DIR/bin/Switchboard.Server.dll ]] || die "no server build in $DIR/bin"
    launch_node "$k"
    wait_ready "$k"
    echo "node $k: http://127.0.0.1:$(node_port "$k") (pid $(<"$DIR/node$k/pid"))"
}

cmd_down() {
    local k pid pids=()
    for k in $(known_nodes); do
        pid=$(node_pid "$k")
        [[ -n $pid ]] || continue
        kill -TERM "$pid" 2>/dev/null || true
        pids+=("$k:$pid")
    done
    local deadline=$((SECONDS + STOP_TIMEOUT)) entry
    for entry in "${pids[@]}"; do
        k=${entry%%:*}
        pid=${entry#*:}
        if ! wait_gone "$pid" $((deadline > SECONDS ? deadline - SECONDS : 0)); then
            echo "node $k (pid $pid) did not stop within ${STOP_TIMEOUT}s; SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            wait_gone "$pid" 10 || die "node $k (pid $pid) is still there after SIGKILL"
        fi
        echo "node $k stopped (pid $pid)"
    done
    if [[ -d $DIR/services ]]; then
        bash "$REPO/scripts/services.sh" down "$DIR/services"
    fi
}

# ---------------------------------------------------------------------------------------------------------------
# Arguments: COMMAND [K] then --dir DIR / --nodes N (also --dir=DIR, --nodes=N), in any order.

CMD=${1:-}
[[ -n $CMD ]] || usage
shift
K=""
if [[ $CMD == kill-node || $CMD == start-node ]]; then
    K=${1:-}
    [[ $K =~ ^[1-9][0-9]*$ ]] || usage
    shift
fi
DIR="" NODES=""
while (($#)); do
    case $1 in
        --dir) (($# >= 2)) || usage; DIR=$2; shift 2 ;;
        --dir=*) DIR=${1#--dir=}; shift ;;
        --nodes) (($# >= 2)) || usage; NODES=$2; shift 2 ;;
        --nodes=*) NODES=${1#--nodes=}; shift ;;
        *) usage ;;
    esac
done
[[ -n $DIR ]] || usage

case $CMD in
    up)
        [[ $NODES =~ ^[1-9][0-9]*$ ]] || usage
        ((NODES <= 1023)) || die "--nodes must be at most 1023 (node ids are 1..N)"
        mkdir -p "$DIR"
        DIR=$(realpath "$DIR")
        cmd_up
        ;;
    kill-node | start-node | down)
        [[ -z $NODES ]] || usage
        [[ -d $DIR ]] || die "$DIR does not exist"
        DIR=$(realpath "$DIR")
        case $CMD in
            kill-node) cmd_kill_node "$K" ;;
            start-node) cmd_start_node "$K" ;;
            down) cmd_down ;;
        esac
        ;;
    *) usage ;;
esac
