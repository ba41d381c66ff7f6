#!/usr/bin/env bash
# The runner's performance targets, measured: prints a table (see benches/README.md).
#
#   benches/run.sh [--quick] [--no-cron] [--keep]
#
# --quick    shorter windows and fewer repetitions (about 9 minutes instead of about 40)
# --only S,… some scenarios only (see bench.py --help)
# --no-cron  skip Debian's cron (otherwise installed with apt-get if missing, run as `cron -f`)
# --keep     keep the temporary folder (databases, runner logs) for a closer look
#
# Not part of `cargo test` and not for CI: it takes minutes, needs root for cron, and its figures
# depend on the machine. Everything it starts is stopped and everything it creates is removed on
# exit, failure or Ctrl-C.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
keep=0
for arg in "$@"; do
    [[ "$arg" == --keep ]] && keep=1
done

bin="${CARGO_TARGET_DIR:-$root/target}/release/cronmgr"
newest_source="$(find "$root/src" "$root/Cargo.toml" "$root/Cargo.lock" -newer "$bin" -print -quit 2>/dev/null || true)"
if [[ ! -x "$bin" || -n "$newest_source" ]]; then
    echo "building the release binary (cargo build --release)..." >&2
    (cd "$root" && cargo build --release --quiet)
fi

work="$(mktemp -d /tmp/cronmgr-bench.XXXXXX)"
# bench.py writes the pid of every process it starts to $work/pids and the path of every file it
# creates outside $work (the /etc/cron.d entries, cron's pid file) to $work/created, so this trap can clean up even
# after bench.py itself was killed.
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ -f "$work/pids" ]]; then
        while read -r pid; do
            [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null || true
        done <"$work/pids"
        sleep 0.5
        while read -r pid; do
            [[ -n "$pid" ]] && kill -KILL "$pid" 2>/dev/null || true
        done <"$work/pids"
    fi
    if [[ -f "$work/created" ]]; then
        while read -r path; do
            [[ -n "$path" ]] && rm -f -- "$path"
        done <"$work/created"
    fi
    if [[ $keep == 1 ]]; then
        echo "kept $work" >&2
    else
        rm -rf -- "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# In the background and waited for: bash runs a trap only once its foreground child has ended,
# while `wait` returns as soon as a signal arrives.
python3 "$here/bench.py" --bin "$bin" --work "$work" "$@" &
echo $! >>"$work/pids"
wait $!
