#!/usr/bin/env python3
"""The burst on each store: 10,000 jobs running /usr/bin/true plus one priority-1 job, all due the
same second, on SQLite (one runner) and on PostgreSQL (one, two and three runners sharing the
database). Prints a table: when the last slot started and was recorded, how the burst was shared
between the runners, how many transactions the PostgreSQL server counted per execution (the
load of a shared machine moves it far less than the times: a loop turn's batch grows when the
runner is slowed), the CPU-seconds each part used (the jobs, reaped by the runners; the runners
themselves; a PostgreSQL server on this machine, its postmaster and every process it ran or
reaped), and the goal of issue #19 (2 runners on PostgreSQL within 1.5x of SQLite with one).
On a shared machine the CPU figures move too (the same 10,000 jobs took 5.2 to 7.2 CPU-seconds
in one session): compare a part with the jobs of the same run. Usage:

    benches/burst_backends.py [--runs N] [--pg postgres://user:pass@127.0.0.1/db] [--bin PATH]
                              [--only sqlite,pg1,pg2,pg3]

The PostgreSQL URL defaults to $CRONMGR_TEST_POSTGRES; each run gets a fresh schema. Build first:
`cargo build --release`. Each runner gets --max-concurrent 16; on PostgreSQL the system's
max_concurrent_jobs (the fleet-wide cap) is set to 16 per runner so it does not bind.
"""

import argparse
import json
import math
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

JOBS = int(os.environ.get("BURST_JOBS", "10000"))
CONCURRENCY = 16


def rfc3339(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(t * 1000) % 1000:03d}Z"


def epoch(s):
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


class Sqlite:
    def __init__(self, work):
        self.db = os.path.join(work, "burst.db")

    def url(self):
        return self.db

    def exec_script(self, sql):
        con = sqlite3.connect(self.db, timeout=10)
        con.executescript(sql)
        con.close()

    def transactions(self):
        return None

    def query(self, sql):
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()


class Postgres:
    def __init__(self, base, name):
        self.base = base
        self.schema = f"bench_{name}_{os.getpid()}_{int(time.time())}"
        self.session = None
        psql(base, f"CREATE SCHEMA {self.schema}")

    def url(self):
        sep = "&" if "?" in self.base else "?"
        return f"{self.base}{sep}options=-csearch_path%3D{self.schema}"

    def exec_script(self, sql):
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", self.url()], input=sql, text=True,
                       check=True, capture_output=True)

    def query(self, sql):
        # One psql kept open for the polls: a psql per poll (a process, a connection and a
        # backend each) cost about 1.3 CPU-seconds per burst on the machine under test.
        if self.session is None:
            self.session = subprocess.Popen(["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", self.url()],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.session.stdin.write(sql.rstrip().rstrip(";") + ";\n\\echo __done__\n")
        self.session.stdin.flush()
        rows = []
        for line in self.session.stdout:
            line = line.rstrip("\n")
            if line == "__done__":
                return rows
            if line:
                rows.append(tuple(None if c == "" else c for c in line.split("|")))
        raise RuntimeError(f"psql exited {self.session.wait()} during: {sql}")

    def drop(self):
        if self.session is not None:
            self.session.stdin.close()
            self.session.wait()
            self.session = None
        psql(self.base, f"DROP SCHEMA {self.schema} CASCADE")

    def transactions(self):
        """The database's transactions so far, committed and rolled back, as the server counts
        them (every session's, this script's own polls included: a few dozen a burst)."""
        return int(psql(self.base, "SELECT xact_commit + xact_rollback FROM pg_stat_database "
                                   "WHERE datname = current_database()").strip())


TICK = os.sysconf("SC_CLK_TCK")


def stat_fields(pid):
    """A process's name and the fields after it in /proc/PID/stat (the parent's pid is [1])."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    return stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()


def cpu_of(fields):
    """CPU-seconds of a process: its own, and its reaped children's (a runner's: its jobs')."""
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / TICK, (cutime + cstime) / TICK


def proc_cpu(pid):
    return cpu_of(stat_fields(pid)[1])


def server_cpu():
    """CPU-seconds used so far by a PostgreSQL server on this machine (its postmaster, the
    processes it runs, and those it reaped: the runners' backends once they exit), or None when
    no server runs here (or its processes cannot be read)."""
    procs = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            procs[int(d)] = stat_fields(d)
        except OSError:
            continue  # it exited since the listing
    names = {p: name for p, (name, _) in procs.items()}
    masters = [p for p, (name, fields) in procs.items()
               if name == "postgres" and names.get(int(fields[1])) != "postgres"]
    if len(masters) != 1:
        return None
    own, reaped = cpu_of(procs[masters[0]][1])
    return own + reaped + sum(cpu_of(fields)[0] for name, fields in procs.values()
                              if int(fields[1]) == masters[0])


def psql(url, sql):
    return subprocess.run(["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
                          check=True, capture_output=True, text=True).stdout


def start_runner(binary, env, db, log, *args):
    f = open(log, "w")
    p = subprocess.Popen([binary, "--db", db, "run", "--max-concurrent", str(CONCURRENCY), *args], env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=f)
    f.close()
    deadline = time.time() + 60
    while time.time() < deadline:
        with open(log) as r:
            if "runner ready" in r.read():
                return p
        if p.poll() is not None:
            raise RuntimeError(f"runner exited {p.returncode}; see {log}")
        time.sleep(0.02)
    raise RuntimeError(f"runner not ready in 60 s; see {log}")


def burst(binary, store, work, runners, lead):
    env = dict(os.environ, CRONMGR_CONFIG=os.path.join(work, "config.toml"), HOME=work, RUST_LOG=os.environ.get("RUST_LOG_OVERRIDE", "cronmgr=info"))
    env.pop("NOTIFY_SOCKET", None)
    # Create the schema through cronmgr itself, and the fleet-wide cap.
    subprocess.run([binary, "--db", store.url(), "settings", "set", "max_concurrent_jobs",
                    str(CONCURRENCY * runners)], env=env, check=True, capture_output=True)
    slot = math.ceil(time.time()) + lead
    t = datetime.fromtimestamp(slot, timezone.utc)
    expr = f"{t.second} {t.minute} {t.hour} {t.day} {t.month} *"
    now = rfc3339(time.time())
    values = []
    for k in range(JOBS + 1):
        name, argv, prio = (f"burst-{k:05d}", ["/usr/bin/true"], 5) if k < JOBS else ("urgent", ["/usr/bin/true"], 1)
        params = json.dumps({"argv": argv}).replace("'", "''")
        values.append(f"('default', '{name}', '{expr}', 'UTC', 'shell', '{params}', {prio}, '{now}', '{now}', '{rfc3339(slot)}')")
    store.exec_script("BEGIN;\nINSERT INTO jobs (system, name, schedule, timezone, command, params, priority, "
                      "created_at, updated_at, next_run_at) VALUES\n" + ",\n".join(values) + ";\nCOMMIT;\n")
    commits_before = store.transactions()
    server_before = server_cpu() if isinstance(store, Postgres) else None
    procs = [start_runner(binary, env, store.url(), os.path.join(work, f"runner{i}.log")) for i in range(runners)]
    ready_margin = slot - time.time()
    total = JOBS + 1
    recorded = None
    while time.time() < slot + 300:
        time.sleep(0.25)
        if time.time() < slot:
            continue
        done = int(store.query("SELECT count(*) FROM executions WHERE finished_at IS NOT NULL")[0][0])
        if done >= total:
            recorded = time.time() - slot
            break
    # Before they stop: each runner's own CPU time, and its jobs' (children it reaped).
    cpu = [proc_cpu(p.pid) for p in procs]
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(60)
    # A backend reports its transactions when it exits (the runners have) or idles a second.
    time.sleep(1.5)
    commits = store.transactions()
    server_after = server_cpu() if server_before is not None else None
    (first, last, last_fin, started), = store.query(
        "SELECT min(started_at), max(started_at), max(finished_at), count(started_at) FROM executions "
        "WHERE triggered_by = 'schedule'")
    statuses = dict(store.query("SELECT status, count(*) FROM executions GROUP BY status"))
    (u_started,), = store.query("SELECT e.started_at FROM executions e JOIN jobs j ON j.id = e.job_id "
                                "WHERE j.name = 'urgent'") or [(None,)]
    per_runner = store.query("SELECT runner_id, count(*) FROM executions GROUP BY runner_id ORDER BY 1")
    dups = int(store.query("SELECT count(*) FROM (SELECT job_id FROM executions GROUP BY job_id, scheduled_for "
                           "HAVING count(*) > 1) AS d")[0][0])
    return dict(
        complete=int(started) == total and int(statuses.get("success", 0)) == total and dups == 0,
        statuses=statuses,
        last_start=epoch(last) - slot,
        last_record=epoch(last_fin) - slot,
        recorded_seen=recorded,
        urgent_ms=(epoch(u_started) - slot) * 1000 if u_started else None,
        per_runner=[int(n) for _, n in per_runner],
        ready_margin=ready_margin,
        duplicates=dups,
        transactions=None if commits is None else commits - commits_before,
        cpu_jobs=sum(c[1] for c in cpu),
        cpu_runners=sum(c[0] for c in cpu),
        cpu_server=None if server_after is None else server_after - server_before,
    )


def med_range(xs, unit, nd):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    m = statistics.median(xs)
    unit = f" {unit}" if unit else ""
    return f"{m:.{nd}f}{unit} ({min(xs):.{nd}f}–{max(xs):.{nd}f})" if len(xs) > 1 else f"{m:.{nd}f}{unit}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--pg", default=os.environ.get("CRONMGR_TEST_POSTGRES"))
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "cronmgr"))
    ap.add_argument("--only", default="sqlite,pg1,pg2,pg3")
    a = ap.parse_args()
    if not a.pg:
        sys.exit("give --pg postgres://… or set CRONMGR_TEST_POSTGRES")
    binary = os.path.abspath(a.bin)
    cases = [("SQLite, 1 runner", "sqlite", 1, "sqlite"), ("PostgreSQL, 1 runner", "pg", 1, "pg1"),
             ("PostgreSQL, 2 runners sharing it", "pg", 2, "pg2"),
             ("PostgreSQL, 3 runners sharing it", "pg", 3, "pg3")]
    wanted = set(a.only.split(","))
    cases = [c[:3] for c in cases if c[3] in wanted]
    results = {c[0]: [] for c in cases}
    load_before = os.getloadavg()[0]
    for run in range(a.runs):
        for label, kind, runners in cases:
            with tempfile.TemporaryDirectory(prefix="cronmgr-burst-") as work:
                with open(os.path.join(work, "config.toml"), "w") as f:
                    f.write('[executors]\nenabled = ["shell"]\n[executors.shell]\nallow = ["/usr/bin/true"]\n')
                store = Sqlite(work) if kind == "sqlite" else Postgres(a.pg, f"r{run}_{runners}")
                print(f"{label}, run {run + 1}/{a.runs} …", file=sys.stderr, flush=True)
                try:
                    r = burst(binary, store, work, runners, lead=10)
                finally:
                    if kind == "pg" and not os.environ.get("BURST_KEEP_SCHEMA"):
                        store.drop()
                print(f"  {r}", file=sys.stderr, flush=True)
                results[label].append(r)
    print(f"\nburst: {JOBS:,} × /usr/bin/true + 1 priority-1 job due the same second, --max-concurrent {CONCURRENCY} "
          f"per runner; {a.runs} runs each; load {load_before:.1f} → {os.getloadavg()[0]:.1f}\n")
    head = ("store", "last start", "all recorded", "priority-1 started", "executions per runner",
            "server transactions per execution", "CPU-s: jobs", "CPU-s: runners", "CPU-s: server",
            "complete, no slot twice")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for label, _, _ in cases:
        rs = results[label]
        print(f"| {label} | {med_range([r['last_start'] for r in rs], 's', 2)} | "
              f"{med_range([r['last_record'] for r in rs], 's', 2)} | "
              f"{med_range([r['urgent_ms'] for r in rs], 'ms', 0)} | "
              f"{'; '.join('/'.join(str(n) for n in r['per_runner']) for r in rs)} | "
              f"{med_range([r['transactions'] / (JOBS + 1) if r['transactions'] else None for r in rs], '', 2)} | "
              f"{med_range([r['cpu_jobs'] for r in rs], '', 1)} | "
              f"{med_range([r['cpu_runners'] for r in rs], '', 1)} | "
              f"{med_range([r['cpu_server'] for r in rs], '', 1)} | "
              f"{'yes' if all(r['complete'] for r in rs) else 'NO'} |")
    base = results.get("SQLite, 1 runner")
    two = results.get("PostgreSQL, 2 runners sharing it")
    if base and two:
        b = statistics.median(r["last_record"] for r in base)
        t = statistics.median(r["last_record"] for r in two)
        print(f"\nPostgreSQL with 2 runners / SQLite with 1 (all recorded, medians): {t / b:.2f}x "
              f"(goal: at most 1.5x) — {'met' if t <= 1.5 * b else 'MISSED'}")


if __name__ == "__main__":
    main()
