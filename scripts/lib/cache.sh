# Sourced by the scripts that fetch into the lab's cache: its directory, as p2pdma-lab finds
# it, and one writer at a time per entry (the same `<cache>/<entry>.lock` flock p2pdma takes).
p2pdma_cache=${P2PDMA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/p2pdma}

# lock_cache ENTRY: holds <cache>/ENTRY.lock on fd 9 until the script exits; waits (saying
# so) while another process holds it. Callers look at the cache again once they hold it.
lock_cache() {
    (umask 077 && mkdir -p "$p2pdma_cache")
    exec 9>>"$p2pdma_cache/$1.lock"
    if ! flock -n 9; then
        echo "waiting for another fetch into $p2pdma_cache/$1" >&2
        flock 9
    fi
}
