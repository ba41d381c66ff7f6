#!/usr/bin/env python3
"""The runner's performance targets, measured. Run through benches/run.sh, which builds the
release binary and cleans up after this script even if it dies.

Every scenario runs `cronmgr run` on a fresh database in the work folder. Jobs are inserted with
SQL (10,000 `cronmgr add` would take minutes), into a database `cronmgr list` created, so the
schema is the binary's own. Figures come from the database the runner writes (scheduled_for,
started_at, finished_at, output) and from /proc of the runner; nothing here asserts: it prints a
table, targets beside figures.
"""

import argparse
import collections
import json
import math
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone

SPAWN_N = 10_000
SPAWN_PARALLEL = 16
BURST_JOBS = 10_000
IDLE_JOBS = 1_000
CLK_TCK = os.sysconf("SC_CLK_TCK")

MODES = {
    # fire-latency runs x seconds each, burst runs, idle window (s, at least), machine-limit runs,
    # cron burst runs
    "quick": dict(latency_runs=2, latency_s=20, burst_runs=2, idle_s=100, limit_runs=2, cron_bursts=1,
                  cli_runs=7, systemd_bursts=1, retention_runs=2, startup_runs=3, durability_runs=2, soak_s=60),
    "full": dict(latency_runs=3, latency_s=120, burst_runs=5, idle_s=600, limit_runs=5, cron_bursts=3,
                 cli_runs=15, systemd_bursts=2, retention_runs=3, startup_runs=5, durability_runs=3, soak_s=600),
}
# scenario 5: history and status against a big history
HISTORY_ROWS = 1_000_000
HISTORY_JOBS = 1_000
HISTORY_DAYS = 60
# scenario 6: old executions retention has to delete during a burst
OLD_ROWS = 100_000
# scenario 7: start-up to READY=1
STARTUP_JOBS = 100_000
APPLY_JOBS = (20_000, 60_000)  # apply --check: once quadratic (4.7 s and 86 s), now linear
# scenario 13: soak
SOAK_JOBS = 1_000
SOAK_EVERY = 10  # each job fires every SOAK_EVERY seconds, spread over the seconds: 100 a second
SOAK_SAMPLE = 10


# ---- small helpers --------------------------------------------------------------------------


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def rfc3339(t):
    """Epoch seconds -> the store's format: RFC 3339 UTC with milliseconds."""
    dt = datetime.fromtimestamp(t, timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def epoch(s):
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def pct(values, p):
    """Nearest-rank percentile."""
    v = sorted(values)
    if not v:
        return float("nan")
    k = max(0, min(len(v) - 1, math.ceil(p / 100 * len(v)) - 1))
    return v[k]


def med_range(values, unit, digits=1):
    """'median (min–max, n runs)' of per-run figures."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "n/a"
    m = statistics.median(values)
    if len(values) == 1:
        return f"{m:.{digits}f} {unit} (1 run)"
    return f"{m:.{digits}f} {unit} ({min(values):.{digits}f}–{max(values):.{digits}f}, {len(values)} runs)"


class Bench:
    def __init__(self, args):
        self.bin = args.bin
        self.work = args.work
        self.mode = "quick" if args.quick else "full"
        self.m = MODES[self.mode]
        self.config = os.path.join(self.work, "config.toml")
        with open(self.config, "w") as f:
            f.write('[executors]\nenabled = ["shell"]\n[executors.shell]\n'
                    'allow = ["/usr/bin/true", "/usr/bin/date"]\n')
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("CRONMGR_", "RUST_LOG", "NOTIFY_SOCKET"))}
        self.env["CRONMGR_CONFIG"] = self.config
        self.rows = []  # (scenario, metric, cronmgr, target, verdict, cron, limit)
        self.busy = []  # (from, to) of cronmgr bursts: cron's latency samples then are not comparable
        self.notes = []
        self.reclaim = proactive_reclaim()
        if self.reclaim:
            self.notes.append(f"this machine {self.reclaim}: an idle process's code and data pages "
                              "are read back from disk at its next wake-up")

    # ---- bookkeeping for run.sh's trap ----

    def remember_pid(self, pid):
        with open(os.path.join(self.work, "pids"), "a") as f:
            f.write(f"{pid}\n")

    def remember_file(self, path):
        with open(os.path.join(self.work, "created"), "a") as f:
            f.write(f"{path}\n")

    # ---- databases and runners ----

    def new_db(self, name):
        d = os.path.join(self.work, name)
        os.makedirs(d, exist_ok=True)
        db = os.path.join(d, "cronmgr.db")
        # Created by a command that writes (read-only ones refuse a missing database): a runner
        # with nothing to do, which registers, leaves and exits.
        subprocess.run([self.bin, "--db", db, "run", "--once"], env=self.env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return db

    def insert_jobs(self, db, jobs):
        """jobs: (name, schedule, argv, priority, next_run_at epoch)."""
        now = rfc3339(time.time())
        con = sqlite3.connect(db, timeout=10)
        with con:
            con.executemany(
                "INSERT INTO jobs (system, name, schedule, timezone, command, params, priority, "
                "created_at, updated_at, next_run_at) VALUES ('default', ?, ?, 'UTC', 'shell', ?, ?, ?, ?, ?)",
                [(n, s, json.dumps({"argv": a}), p, now, now, rfc3339(t)) for n, s, a, p, t in jobs])
        con.close()

    def start_runner(self, db, *args, env=None):
        logpath = db + ".runner.log"
        logf = open(logpath, "w")
        p = subprocess.Popen([self.bin, "--db", db, "run", *args], env=dict(self.env, **(env or {})),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=logf)
        logf.close()
        self.remember_pid(p.pid)
        deadline = time.time() + 60
        while time.time() < deadline:
            with open(logpath) as f:
                if "runner ready" in f.read():
                    return p, time.time()
            if p.poll() is not None:
                raise RuntimeError(f"the runner exited with {p.returncode}; see {logpath}")
            time.sleep(0.02)
        raise RuntimeError(f"the runner did not get ready within 60 s; see {logpath}")

    def stop(self, p, grace=60):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    @staticmethod
    def query(db, sql, args=()):
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    # ---- scenarios ----

    def machine_limit(self):
        log(f"machine limit: spawn {SPAWN_N} /usr/bin/true {SPAWN_PARALLEL} at a time; 10,000 SQLite rows")
        spawn, spawn_clone, per_tx, batched, d50, d99 = [], [], [], [], [], []
        for i in range(self.m["limit_runs"]):
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--machine-limit",
                                  "--work", os.path.join(self.work, f"limit{i}")],
                                 check=True, capture_output=True, text=True).stdout
            r = json.loads(out)
            spawn.append(r["spawn_s"])
            if r.get("spawn_clone_s") is not None:
                spawn_clone.append(r["spawn_clone_s"])
            self.spawner = r["spawner"]
            per_tx.append(r["sqlite_per_tx_s"])
            batched.append(r["sqlite_batched_s"])
            d50.append(r["date_p50_ms"])
            d99.append(r["date_p99_ms"])
        self.limit = dict(spawn=spawn, spawn_clone=spawn_clone, per_tx=per_tx, batched=batched, date_p50=d50, date_p99=d99)
        self.rows += [
            ("machine", f"spawn+reap {SPAWN_N} /usr/bin/true, {SPAWN_PARALLEL} at a time ({self.spawner})",
             "", "", "", "", med_range(spawn, "s", 2)),
        ] + ([
            ("machine", f"spawn+reap {SPAWN_N} /usr/bin/true, {SPAWN_PARALLEL} at a time (C clone+exec loop, as cronmgr spawns)",
             "", "", "", "", med_range(spawn_clone, "s", 2)),
        ] if spawn_clone else []) + [
            ("machine", "SQLite 10,000 INSERT + 10,000 UPDATE, one BEGIN IMMEDIATE…COMMIT each (WAL, synchronous=NORMAL)",
             "", "", "", "", med_range(per_tx, "s", 2)),
            ("machine", "SQLite the same rows in 2 transactions", "", "", "", "", med_range(batched, "s", 3)),
        ]

    def fire_latency(self):
        runs, parts = [], []
        for i in range(self.m["latency_runs"]):
            log(f"fire latency run {i + 1}/{self.m['latency_runs']}: one '* * * * * *' job for {self.m['latency_s']} s")
            db = self.new_db(f"latency{i}")
            first = math.ceil(time.time()) + 2
            self.insert_jobs(db, [("lone", "* * * * * *", ["/usr/bin/date", "+%s.%N"], 5, first)])
            p, ready = self.start_runner(db)
            time.sleep(self.m["latency_s"])
            self.stop(p)
            rows = self.query(db, "SELECT id, scheduled_for, started_at, output FROM executions "
                                  "WHERE status = 'success' AND triggered_by = 'schedule' ORDER BY id")
            logged = starting_lines(db + ".runner.log")
            child, claim, before, after = [], [], [], []
            for eid, sched, started, output in rows:
                s = epoch(sched)
                if s < ready:
                    continue
                c = float(output.strip())
                child.append((c - s) * 1000)
                claim.append((epoch(started) - s) * 1000)
                if eid in logged:
                    before.append((logged[eid] - s) * 1000)
                    after.append((c - logged[eid]) * 1000)
            runs.append((child, claim))
            parts.append((before, after))
        self.latency = runs
        n = sum(len(c) for c, _ in runs)
        p99 = [pct(c, 99) for c, _ in runs]
        verdict = "met" if p99 and statistics.median(p99) < 5 else "MISSED"
        lim = getattr(self, "limit", None)
        self.rows.append(("machine", "spawn /usr/bin/date → the instant it prints, p50 / p99 (100 spawns from Python)", "", "", "", "",
                          f"{statistics.median(lim['date_p50']):.2f} / {statistics.median(lim['date_p99']):.2f} ms" if lim else ""))
        floor50 = f"{statistics.median(lim['date_p50']):.2f} ms (spawn → date's clock, p50)" if lim else ""
        floor99 = f"{statistics.median(lim['date_p99']):.2f} ms (p99)" if lim else ""
        self.rows += [
            ("fire latency (lone job)", f"slot → child started, p50 ({n} samples)",
             med_range([pct(c, 50) for c, _ in runs], "ms", 2), "", "", None, floor50),
            ("fire latency (lone job)", "slot → child started, p99", med_range(p99, "ms", 2), "< 5 ms", verdict, None, floor99),
            ("fire latency (lone job)", "slot → started_at stamp (the loop's wake-up instant; 1 ms resolution), p50",
             med_range([pct(c, 50) for _, c in runs], "ms", 0), "", "", "", ""),
            ("fire latency (lone job)", "slot → started_at stamp, p99", med_range([pct(c, 99) for _, c in runs], "ms", 0), "", "", "", ""),
            ("fire latency (lone job)", "  of which slot → 'starting' log line (wake-up, claim transaction, allowlist), p50 / p99",
             f"{statistics.median([pct(b, 50) for b, _ in parts]):.2f} / {statistics.median([pct(b, 99) for b, _ in parts]):.2f} ms",
             "", "", "", ""),
            ("fire latency (lone job)", "  and 'starting' → child's clock (pipe, clone, exec), p50 / p99",
             f"{statistics.median([pct(a, 50) for _, a in parts]):.2f} / {statistics.median([pct(a, 99) for _, a in parts]):.2f} ms",
             "", "", "", ""),
        ]

    def burst_once(self, name, label, env=None, argv=("/usr/bin/true",), prepare=None, lead=8):
        """One burst: BURST_JOBS jobs running argv plus the priority-1 job, due the same second.
        prepare(db, slot) runs after the jobs are inserted, before the runner starts."""
        log(f"{label}: {BURST_JOBS} {' '.join(argv)} + 1 priority-1 job due the same second, --max-concurrent 16")
        db = self.new_db(name)
        slot = math.ceil(time.time()) + lead  # room to start the runner and load 10,001 jobs
        busy_from = time.time()
        t = datetime.fromtimestamp(slot, timezone.utc)
        expr = f"{t.second} {t.minute} {t.hour} {t.day} {t.month} *"
        jobs = [(f"burst-{k:05d}", expr, list(argv), 5, slot) for k in range(BURST_JOBS)]
        jobs.append(("urgent", expr, ["/usr/bin/date", "+%s.%N"], 1, slot))
        self.insert_jobs(db, jobs)
        if prepare:
            prepare(db, slot)
        # Rows of this burst are those after any the preparation inserted (a rowid range, cheap to poll).
        base = self.query(db, "SELECT ifnull(max(id), 0) FROM executions")[0][0]
        p, ready = self.start_runner(db, "--max-concurrent", "16", env=env)
        ticks_ready = proc_ticks(p.pid)
        if ready > slot - 0.5:
            self.notes.append(f"{label}: the runner got ready only {slot - ready:.2f} s before the slot")
        total = BURST_JOBS + 1
        recorded_seen = None
        deadline = slot + 300
        while time.time() < deadline:
            time.sleep(0.25)
            if time.time() < slot:
                continue
            done = self.query(db, "SELECT count(*) FROM executions WHERE id > ? AND finished_at IS NOT NULL",
                              (base,))[0][0]
            if done >= total:
                recorded_seen = time.time() - slot
                break
        # The runner's own CPU (every thread, its children not included) from ready to the end.
        runner_cpu = (proc_ticks(p.pid) - ticks_ready) / os.sysconf("SC_CLK_TCK")
        self.stop(p)
        self.busy.append((busy_from, time.time()))
        new = "triggered_by = 'schedule' AND id > ?"
        (first, last, last_fin, started), = self.query(
            db, "SELECT min(started_at), max(started_at), max(finished_at), count(started_at) "
                f"FROM executions WHERE {new}", (base,))
        statuses = dict(self.query(db, f"SELECT status, count(*) FROM executions WHERE {new} GROUP BY status",
                                   (base,)))
        (u_id, u_started, u_output), = self.query(
            db, "SELECT e.id, e.started_at, e.output FROM executions e JOIN jobs j ON j.id = e.job_id "
                "WHERE j.name = 'urgent' AND e.id > ?", (base,)) or [(None, None, None)]
        min_id = self.query(db, f"SELECT min(id) FROM executions WHERE {new}", (base,))[0][0]
        r = dict(
            statuses=statuses,
            complete=started == total and statuses.get("success", 0) == total,
            first_start=epoch(first) - slot if first else None,
            last_start=epoch(last) - slot if last else None,
            last_record=epoch(last_fin) - slot if last_fin else None,
            recorded_seen=recorded_seen,
            urgent_claim=(epoch(u_started) - slot) * 1000 if u_started else None,
            urgent_child=(float(u_output.strip()) - slot) * 1000 if u_output else None,
            urgent_rank=(u_id - min_id + 1) if u_id else None,
            runner_cpu_us=runner_cpu / total * 1e6,
        )
        if not r["complete"]:
            self.notes.append(f"{label} incomplete: statuses {statuses}")
        log(f"  {r}")
        return r, db, slot, base

    def burst(self):
        runs = []
        for i in range(self.m["burst_runs"]):
            r, _, _, _ = self.burst_once(f"burst{i}", f"burst run {i + 1}/{self.m['burst_runs']}")
            runs.append(r)
        # Under systemd NOTIFY_SOCKET is set, and the runner sends a STATUS= line after each finish;
        # a thread reads the datagrams as systemd would (a full queue would block the sender).
        import socket
        import threading
        self.systemd_bursts = []
        for i in range(self.m["systemd_bursts"]):
            path = os.path.join(self.work, f"notify{i}.sock")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(path)
            sock.settimeout(0.5)
            got, stop = [0], threading.Event()

            def drain():
                while not stop.is_set():
                    try:
                        sock.recv(4096)
                        got[0] += 1
                    except socket.timeout:
                        pass
            reader = threading.Thread(target=drain, daemon=True)
            reader.start()
            r, _, _, _ = self.burst_once(f"burst-systemd{i}", f"burst under systemd (NOTIFY_SOCKET) {i + 1}/{self.m['systemd_bursts']}",
                                         env={"NOTIFY_SOCKET": path})
            stop.set()
            reader.join()
            sock.close()
            r["notifications"] = got[0]
            log(f"  {got[0]} notifications")
            self.systemd_bursts.append(r)
        self.bursts = runs

        def col(k):
            return [r[k] for r in runs if r[k] is not None]

        last_start = col("last_start")
        last_record = col("last_record")
        ok = last_record and statistics.median(last_record) < 5 and all(r["complete"] for r in runs)
        urgent = col("urgent_child")
        # The floor for cronmgr's way of spawning when it was measured, else posix_spawn's.
        limit = getattr(self, "limit", None) or {}
        floor = limit.get("spawn_clone") or limit.get("spawn")
        spawn = statistics.median(floor) if floor else None
        self.rows += [
            (f"burst {BURST_JOBS} jobs, 16 at a time", "slot → last start (started_at)", med_range(last_start, "s", 2),
             "< 5 s", "met" if last_start and statistics.median(last_start) < 5 else "MISSED", None,
             f"{spawn:.2f} s (spawn only)" if spawn else ""),
            (f"burst {BURST_JOBS} jobs, 16 at a time", "slot → last record (finished_at)", med_range(last_record, "s", 2),
             "< 5 s", "met" if ok else "MISSED", "n/a (cron keeps no record)", ""),
            (f"burst {BURST_JOBS} jobs, 16 at a time", "the runner's own CPU per execution (utime+stime of all its threads, ready → end)",
             med_range(col("runner_cpu_us"), "µs", 0), "", "", "", ""),
            ("priority-1 job in the burst", "slot → child started", med_range(urgent, "ms", 0),
             "< 100 ms", "met" if urgent and statistics.median(urgent) < 100 else "MISSED", "n/a (no priorities)", ""),
            ("priority-1 job in the burst", "slot → started_at stamp (the loop's wake-up instant)",
             med_range(col("urgent_claim"), "ms", 0), "", "", "", ""),
            ("priority-1 job in the burst", "its place in start order (1 = first)",
             ", ".join(str(x) for x in col("urgent_rank")), "", "", "", ""),
        ]
        sd = [r["last_record"] for r in self.systemd_bursts if r["last_record"] is not None]
        if self.systemd_bursts:
            self.rows.append((f"burst {BURST_JOBS} jobs, 16 at a time", "slot → last record, under systemd (NOTIFY_SOCKET set: STATUS= after each finish)",
                              med_range(sd, "s", 2), "< 5 s", "met" if sd and statistics.median(sd) < 5 else "MISSED",
                              "", f"{statistics.median([r['notifications'] for r in self.systemd_bursts]):.0f} datagrams"))

    def idle(self, cron):
        """cronmgr with 1,000 jobs none of which fires; cron (if any) measured side by side."""
        month = (datetime.now(timezone.utc).month + 5) % 12 + 1  # half a year away
        now = time.time()
        jobs = []
        for k in range(IDLE_JOBS):
            mi, h = k % 60, (k // 60) % 24
            year = datetime.now(timezone.utc).year
            t = datetime(year, month, 1, h, mi, tzinfo=timezone.utc).timestamp()
            if t <= now:
                t = datetime(year + 1, month, 1, h, mi, tzinfo=timezone.utc).timestamp()
            jobs.append((f"idle-{k:04d}", f"{mi} {h} 1 {month} *", ["/usr/bin/true"], 5, t))
        db = self.new_db("idle")
        self.insert_jobs(db, jobs)
        # The window ends 12 s before a minute boundary, so cron's burst can follow right away.
        start = time.time() + 5
        boundary = (math.floor((start + self.m["idle_s"] + 12) / 60) + 1) * 60
        end = boundary - 12
        cron_proc = cron.proc if cron.ok else None
        if cron_proc:
            lines = [f"{mi} {h} 1 {month} * root /usr/bin/true" for mi, h in
                     ((k % 60, (k // 60) % 24) for k in range(IDLE_JOBS))]
            cron.write_crontab("cronmgr-bench-idle", lines)
        p, _ = self.start_runner(db)
        log(f"idle: {IDLE_JOBS} jobs loaded, measuring for {end - start:.0f} s"
            + (" (cron beside it, with the same 1,000 lines and its '* * * * *' latency line)" if cron_proc else ""))
        time.sleep(max(0, start - time.time()))
        samples, cron_samples = [], []
        while True:
            samples.append(proc_sample(p.pid))
            if cron_proc:
                cron_samples.append(proc_sample(cron_proc.pid))
            if time.time() >= end:
                break
            time.sleep(min(5, max(0.0, end - time.time())))
        self.stop(p)
        if cron_proc:
            cron.remove_crontab("cronmgr-bench-idle")
            cron.remove_crontab("cronmgr-bench-latency")
        ours = summarize_idle(samples)
        theirs = summarize_idle(cron_samples) if cron_samples else None
        self.idle_result = (ours, theirs)
        mins = ours["minutes"]

        def c(key, fmt):
            return fmt(theirs[key]) if theirs else cron.why

        self.rows += [
            (f"idle, {IDLE_JOBS} jobs loaded ({mins:.1f} min)", "private memory Private_Dirty (smaps_rollup, max over window)",
             f"{ours['private_dirty_max_kb'] / 1024:.2f} MB", "< 4 MB",
             "met" if ours["private_dirty_max_kb"] < 4 * 1024 else "MISSED",
             c("private_dirty_max_kb", lambda v: f"{v / 1024:.2f} MB"), ""),
            (f"idle, {IDLE_JOBS} jobs loaded ({mins:.1f} min)", "private memory Pss_Anon (smaps_rollup, max over window)",
             f"{ours['pss_anon_max_kb'] / 1024:.2f} MB", "< 4 MB",
             "met" if ours["pss_anon_max_kb"] < 4 * 1024 else "MISSED",
             c("pss_anon_max_kb", lambda v: f"{v / 1024:.2f} MB"), ""),
            (f"idle, {IDLE_JOBS} jobs loaded ({mins:.1f} min)",
             "  beside them: VmRSS (max over window; includes clean file pages, shared, free to drop)",
             f"{ours['rss_max_kb'] / 1024:.2f} MB (of which Private_Clean {ours['private_clean_kb'] / 1024:.2f} MB at the end)",
             "", "", c("rss_max_kb", lambda v: f"{v / 1024:.2f} MB"), ""),
            (f"idle, {IDLE_JOBS} jobs loaded ({mins:.1f} min)", "CPU per minute (schedstat, all threads)",
             f"{ours['cpu_ms_min']:.3f} ms (per-minute max {ours['cpu_ms_min_max']:.3f})", "< 1 ms",
             "met" if ours["cpu_ms_min"] < 1 else "MISSED", c("cpu_ms_min", lambda v: f"{v:.3f} ms"), ""),
            (f"idle, {IDLE_JOBS} jobs loaded ({mins:.1f} min)", "CPU per minute (utime+stime, 10 ms ticks)",
             f"{ours['ticks_ms_min']:.1f} ms", "< 1 ms", "", c("ticks_ms_min", lambda v: f"{v:.1f} ms"), ""),
            (f"idle, {IDLE_JOBS} jobs loaded ({mins:.1f} min)", "wake-ups (voluntary context switches, all threads)",
             f"{ours['vol']} in {mins:.1f} min = {ours['wakeups_min']:.2f}/min (+{ours['invol']} preemptions; {ours['threads']} threads)",
             f"≤ {math.ceil(mins - 1e-6)} (one a minute)", "met" if ours["vol"] <= math.ceil(mins - 1e-6) else "MISSED",
             c("vol", lambda v: f"{v} = {theirs['wakeups_min']:.2f}/min (incl. its fork each minute)"), ""),
            (f"idle, {IDLE_JOBS} jobs loaded ({mins:.1f} min)",
             "  of those, sleeps on a page-in: major faults (code or data the kernel had evicted, read back from disk)",
             f"{ours['majflt']}; without them {ours['vol'] - ours['majflt']} = {(ours['vol'] - ours['majflt']) / mins:.2f}/min",
             "", "", c("majflt", lambda v: f"{v}"), self.reclaim or ""),
            (f"idle, {IDLE_JOBS} jobs loaded ({mins:.1f} min)", "  CPU per minute in the minutes without a page-in",
             (f"{ours['clean_cpu_ms_min']:.3f} ms ({ours['clean_minutes']} of {ours['minutes_measured']} minutes)"
              if ours["clean_minutes"] else f"none: each of the {ours['minutes_measured']} minutes read a page back"),
             "", "", c("clean_cpu_ms_min", lambda v: "none" if math.isnan(v) else f"{v:.3f} ms"), ""),
        ]
        return cron_proc, boundary

    # ---- scenario 5: history and status against 1,000,000 executions ----

    def history_db(self, name):
        """A fresh database of HISTORY_JOBS daily jobs and HISTORY_ROWS executions over the last
        HISTORY_DAYS days (shared by the history/status and stats scenarios)."""
        db = self.new_db(name)
        now = time.time()
        self.insert_jobs(db, [(f"job-{k:04d}", f"{k % 60} {(k // 60) % 24} * * *", ["/usr/bin/true"], 5,
                               next_daily(now, k % 60, (k // 60) % 24)) for k in range(HISTORY_JOBS)])
        first_job = self.query(db, "SELECT min(id) FROM jobs")[0][0]
        t0 = time.perf_counter()
        # roll: a pseudo-random 0..99 that varies both across jobs and across one job's runs
        # (random() would be evaluated once per reference). 90 % success, 5 % failed, 2 % timeout,
        # 2 % skipped, 1 % missed; started_at spread evenly over the last HISTORY_DAYS days.
        sql = """
            WITH RECURSIVE c(n) AS (SELECT :lo UNION ALL SELECT n + 1 FROM c WHERE n < :hi),
            r AS (SELECT n, ((n / :jobs) * 37 + (n % :jobs) * 11) % 100 AS roll, :base + n * :step AS t FROM c)
            INSERT INTO executions (job_id, status, scheduled_for, started_at, finished_at, duration_ms, output,
                error_message, exit_code, triggered_by, attempt, memory_used_mb, cpu_used_percent, pid, runner_pid)
            SELECT :first + n % :jobs,
                CASE WHEN roll < 90 THEN 'success' WHEN roll < 95 THEN 'failed' WHEN roll < 97 THEN 'timeout'
                     WHEN roll < 99 THEN 'skipped' ELSE 'missed' END,
                strftime('%Y-%m-%dT%H:%M:%fZ', t, 'unixepoch'),
                CASE WHEN roll < 97 THEN strftime('%Y-%m-%dT%H:%M:%fZ', t + 0.002, 'unixepoch') END,
                strftime('%Y-%m-%dT%H:%M:%fZ', t + CASE WHEN roll < 97 THEN 0.002 + (n % 5000) / 1000.0 ELSE 0 END, 'unixepoch'),
                CASE WHEN roll < 97 THEN n % 5000 END,
                CASE WHEN roll < 97 THEN 'processed ' || n || ' items' END,
                CASE WHEN roll < 90 THEN NULL WHEN roll < 95 THEN 'exit status 1' WHEN roll < 97 THEN 'timed out after 1m'
                     WHEN roll < 99 THEN 'skipped: the previous run was still running' ELSE 'missed: the runner was down' END,
                CASE WHEN roll < 90 THEN 0 WHEN roll < 95 THEN 1 END,
                'schedule', CASE WHEN roll >= 99 THEN 0 ELSE 1 END,
                CASE WHEN roll < 97 THEN 3.5 END, CASE WHEN roll < 97 THEN 12.0 END,
                CASE WHEN roll < 97 THEN 10000 + n % 30000 END, CASE WHEN roll < 97 THEN 999 END
            FROM r"""
        con = sqlite3.connect(db, timeout=10, isolation_level=None)
        per_tx = HISTORY_ROWS // 10
        step = HISTORY_DAYS * 86400 / HISTORY_ROWS
        for lo in range(0, HISTORY_ROWS, per_tx):
            con.execute("BEGIN IMMEDIATE")
            con.execute(sql, dict(lo=lo, hi=lo + per_tx - 1, jobs=HISTORY_JOBS, first=first_job,
                                  base=now - 60 - HISTORY_DAYS * 86400, step=step))
            con.execute("COMMIT")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
        size = os.path.getsize(db) / 1e6
        log(f"  {HISTORY_ROWS:,} rows inserted in {time.perf_counter() - t0:.1f} s; database {size:.0f} MB")
        self.history_db_mb = size
        return db

    def cli_times(self, db, label, args):
        """Run `cronmgr --db DB ARGS` cli_runs times after a warm-up: times in ms, bytes out."""
        times, size_out = [], 0
        for k in range(self.m["cli_runs"] + 1):  # the first is a warm-up, not counted
            t = time.perf_counter()
            r = subprocess.run([self.bin, "--db", db, *args], env=self.env, stdin=subprocess.DEVNULL,
                               capture_output=True)
            dt = (time.perf_counter() - t) * 1000
            if r.returncode != 0:
                self.notes.append(f"{label} exited {r.returncode}: {r.stderr.decode(errors='replace').strip()[:200]}")
                break
            size_out = len(r.stdout)
            if k:
                times.append(dt)
        log(f"  {label}: {med_range(times, 'ms', 1)}, {size_out} bytes out")
        return times

    def history_status(self):
        log(f"history/status: {HISTORY_ROWS:,} executions over {HISTORY_JOBS} jobs, {HISTORY_DAYS} days")
        db = self.history_db("history")
        commands = [
            ("cronmgr history --json", ["--json", "history"]),
            ("cronmgr history (table)", ["history"]),
            ("cronmgr status --json", ["--json", "status"]),
            ("cronmgr status (table)", ["status"]),
            # not in the list; filters people use, measured the same way
            ("cronmgr history --status failed --json", ["--json", "history", "--status", "failed"]),
            ("cronmgr history --since 1h --json", ["--json", "history", "--since", "1h"]),
        ]
        results = {}
        for label, args in commands:
            times = self.cli_times(db, label, args)
            results[label] = times
            med = statistics.median(times) if times else float("nan")
            self.rows.append((f"history/status, {HISTORY_ROWS:,} executions", f"{label}: process start to exit",
                              med_range(times, "ms", 1), "< 50 ms", "met" if med < 50 else "MISSED", "", ""))
        self.history_result = results

    # ---- scenario 5b: stats over the last week of 1,000,000 executions ----

    def stats(self):
        log(f"stats: {HISTORY_ROWS:,} executions over {HISTORY_JOBS} jobs, {HISTORY_DAYS} days; "
            f"the last 7 days hold {HISTORY_ROWS * 7 // HISTORY_DAYS:,}")
        db = self.history_db("stats")
        commands = [
            ("cronmgr stats --since 7d --json", ["--json", "stats", "--since", "7d"]),
            ("cronmgr stats --since 7d (table)", ["stats", "--since", "7d"]),
            ("cronmgr stats job-0007 --since 7d --json", ["--json", "stats", "job-0007", "--since", "7d"]),
            ("cronmgr stats --since 30d --json", ["--json", "stats", "--since", "30d"]),
        ]
        results = {}
        for label, args in commands:
            times = self.cli_times(db, label, args)
            results[label] = times
            med = statistics.median(times) if times else float("nan")
            self.rows.append((f"stats, {HISTORY_ROWS:,} executions", f"{label}: process start to exit",
                              med_range(times, "ms", 1), "< 50 ms", "met" if med < 50 else "MISSED", "", ""))
        self.stats_result = results

    # ---- scenario 5c: the dashboard's pages over 1,000,000 executions ----

    def web(self):
        """`cronmgr web` on the history database: each page's time from request to the last
        byte (N requests after a warm-up, one at a time), then 50 clients streaming one running
        execution's output at once."""
        import http.client
        import threading
        log(f"web: the dashboard's pages over {HISTORY_ROWS:,} executions")
        db = self.history_db("web")
        token = "bench-token-0123456789abcdef"
        config = os.path.join(self.work, "web-config.toml")
        with open(config, "w") as f:
            f.write('[executors]\nenabled = ["shell"]\n[executors.shell]\nallow = ["/usr/bin/sh"]\n')
        env = dict(self.env, CRONMGR_CONFIG=config, CRONMGR_WEB_TOKEN=token)
        # The job the 50 clients follow: a line every 50 ms for about 5 s.
        subprocess.run([self.bin, "--db", db, "add", "web-stream", "--schedule", "0 0 1 1 *", "--",
                        "/usr/bin/sh", "-c", "i=0; while [ $i -lt 100 ]; do i=$((i+1)); echo line $i; sleep 0.05; done"],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        p = subprocess.Popen([self.bin, "--db", db, "web", "--listen", "127.0.0.1:0"], env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.remember_pid(p.pid)
        addr = None
        for line in p.stderr:
            if "listening on " in line:
                addr = line.split("listening on ")[1].split()[0].replace("http://", "")
                break
        threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
        host, port = addr.rsplit(":", 1)
        headers = {"Authorization": f"Bearer {token}"}

        def fetch(path):
            c = http.client.HTTPConnection(host, int(port), timeout=60)
            t = time.perf_counter()
            c.request("GET", path, headers=headers)
            r = c.getresponse()
            body = r.read()
            dt = (time.perf_counter() - t) * 1000
            c.close()
            return r.status, body, dt

        exe = self.query(db, "SELECT max(id) FROM executions")[0][0]
        job = "job-0007"
        pages = ["/", "/jobs", f"/jobs/{job}", f"/executions/{exe}", "/timeline", "/alerts", "/audit",
                 "/settings", "/runners", "/metrics", "/api/jobs", f"/api/jobs/{job}",
                 f"/api/jobs/{job}/history", f"/api/executions/{exe}", "/api/describe?schedule=0+3+*+*+*"]
        n = self.m["cli_runs"] * 3
        results = {}
        for path in pages:
            times, status, size = [], None, 0
            for k in range(n + 1):  # the first is a warm-up
                status, body, dt = fetch(path)
                size = len(body)
                if status != 200:
                    self.notes.append(f"web {path}: HTTP {status}: {body[:200]!r}")
                    break
                if k:
                    times.append(dt)
            results[path] = times
            if not times:
                continue
            med, p95 = statistics.median(times), pct(times, 95)
            log(f"  {path}: median {med:.1f} ms, p95 {p95:.1f} ms, {size} bytes")
            self.rows.append((f"web, {HISTORY_ROWS:,} executions", f"GET {path} ({n} requests)",
                              f"{med:.1f} ms (p95 {p95:.1f})", "< 100 ms", "met" if p95 < 100 else "MISSED", "", ""))
        # 50 clients on the live output of one running execution.
        run = subprocess.Popen([self.bin, "--db", db, "--quiet", "run-now", "web-stream"], env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.remember_pid(run.pid)
        running = None
        deadline = time.time() + 30
        while running is None and time.time() < deadline:
            rows = self.query(db, "SELECT e.id FROM executions e JOIN jobs j ON j.id = e.job_id "
                                  "WHERE j.name = 'web-stream' AND e.status = 'running'")
            running = rows[0][0] if rows else None
            time.sleep(0.02)
        got = [None] * 50

        def follow(k):
            try:
                c = http.client.HTTPConnection(host, int(port), timeout=60)
                c.request("GET", f"/executions/{running}/stream", headers=headers)
                r = c.getresponse()
                lines, ended = 0, False
                while True:
                    line = r.fp.readline()
                    if not line:
                        break
                    if line.startswith(b"data: line"):
                        lines += 1
                    if line.startswith(b"event: end"):
                        ended = True
                        break
                got[k] = (lines, ended)
            except Exception as e:  # noqa: BLE001 - counted as a client that got nothing
                got[k] = (0, False)
                self.notes.append(f"web stream client {k}: {e}")
        threads = [threading.Thread(target=follow, args=(k,)) for k in range(50)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        took = time.perf_counter() - t0
        run.wait(60)
        full = sum(1 for g in got if g and g[0] == 100 and g[1])
        some = sum(1 for g in got if g and g[0] > 0)
        log(f"  50 streams: {full} got all 100 lines and the end, {some} got lines; {took:.1f} s")
        self.rows.append((f"web, {HISTORY_ROWS:,} executions", "50 clients streaming one run's output (SSE)",
                          f"{full}/50 got every line and the end ({some}/50 some lines), {took:.1f} s",
                          "50/50", "met" if full == 50 else "MISSED", "", ""))
        self.stop(p)
        self.web_result = {"pages": results, "streams": got}

    # ---- scenario 6: retention of 100,000 rows while the burst runs ----

    def retention_burst(self):
        """The burst with every job running `date +%s.%N` (the instant its child ends, near enough),
        with OLD_ROWS prunable executions and without; the recording wait of each execution is
        finished_at (stamped when the loop handles the child's end, just before the batched write)
        minus the instant the child printed."""
        now = rfc3339(time.time())
        sql = """
            WITH RECURSIVE c(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM c WHERE n < :rows - 1),
            r AS (SELECT n, :base + n * 15.0 AS t FROM c)
            INSERT INTO executions (job_id, status, scheduled_for, started_at, finished_at, duration_ms, output,
                exit_code, triggered_by, attempt)
            SELECT :first + n % :jobs, 'success', strftime('%Y-%m-%dT%H:%M:%fZ', t, 'unixepoch'),
                strftime('%Y-%m-%dT%H:%M:%fZ', t, 'unixepoch'), strftime('%Y-%m-%dT%H:%M:%fZ', t + 0.005, 'unixepoch'),
                5, 'old output ' || n, 0, 'schedule', 1
            FROM r"""

        def prepare(old_rows):
            def go(db, slot):
                con = sqlite3.connect(db, timeout=10)
                with con:
                    # Every old row is prunable: older than a day, and beyond the newest one of its job.
                    con.execute("INSERT INTO settings (system, keep_executions, cleanup_days, timezone, created_at, "
                                "updated_at) VALUES ('default', 1, 1, 'UTC', ?, ?)", (now, now))
                    if old_rows:
                        first = con.execute("SELECT min(id) FROM jobs").fetchone()[0]
                        con.execute(sql, dict(rows=old_rows, first=first, jobs=BURST_JOBS,
                                              base=time.time() - 70 * 86400))
                con.close()
            return go

        variants = {}
        for old_rows in (OLD_ROWS, 0):
            runs = []
            for i in range(self.m["retention_runs"]):
                label = (f"retention run {i + 1}/{self.m['retention_runs']}, "
                         + (f"{old_rows:,} prunable rows" if old_rows else "baseline without old rows"))
                r, db, slot, base = self.burst_once(f"retention{old_rows}-{i}", label, env={"RUST_LOG": "cronmgr=debug"},
                                              argv=("/usr/bin/date", "+%s.%N"), prepare=prepare(old_rows))
                lags = []
                for fin, out in self.query(db, "SELECT finished_at, output FROM executions WHERE id > ? "
                                               "AND finished_at IS NOT NULL AND output != ''", (base,)):
                    try:
                        lags.append((epoch(fin) - float(out.strip())) * 1000)
                    except ValueError:
                        pass
                end = slot + (r["last_record"] or 0)
                stamps = log_stamps(db + ".runner.log")
                window = [t for t, _ in stamps if slot <= t <= end + 0.001]
                silence = max((b - a for a, b in zip(window, window[1:])), default=None)
                prunes = [(t, line) for t, line in stamps if " retention" in line and "deleted=" in line]
                deleted = sum(int(line.rsplit("deleted=", 1)[1].split()[0]) for _, line in prunes)
                in_burst = sum(1 for t, _ in prunes if slot <= t <= end)
                left = self.query(db, "SELECT count(*) FROM executions WHERE id <= ?", (base,))[0][0]
                r.update(lag_max=max(lags) if lags else None, lag_p99=pct(lags, 99) if lags else None,
                         lag_p50=pct(lags, 50) if lags else None, lag_n=len(lags), silence_ms=silence * 1000 if silence else None,
                         prune_batches=len(prunes), prune_in_burst=in_burst, deleted=deleted, old_left=left,
                         prune_first=(prunes[0][0] - slot) if prunes else None,
                         prune_last=(prunes[-1][0] - slot) if prunes else None)
                log(f"  recording wait p50/p99/max {r['lag_p50']}/{r['lag_p99']}/{r['lag_max']} ms over {len(lags)}; "
                    f"longest log silence {r['silence_ms']} ms; retention: {len(prunes)} batches, {deleted} rows, "
                    f"{in_burst} during the burst, first/last at slot{r['prune_first']:+.2f}/{r['prune_last']:+.2f} s; "
                    f"{left} old rows left" if prunes else f"  recording wait p50/p99/max {r['lag_p50']}/{r['lag_p99']}/{r['lag_max']} ms; "
                    f"longest log silence {r['silence_ms']} ms; no retention batch")
                runs.append(r)
            variants[old_rows] = runs
        self.retention = variants

        def col(runs, k):
            return [r[k] for r in runs if r.get(k) is not None]

        w, b = variants[OLD_ROWS], variants[0]
        worst = col(w, "lag_max")
        sc = f"retention of {OLD_ROWS:,} rows in the burst"
        batches = ", ".join(f"{r['prune_in_burst']} of {r['prune_batches']}" for r in w)
        self.rows += [
            (sc, "longest recording wait (child's end → finished_at stamp, before the batched write)",
             med_range(worst, "ms", 0), "< 100 ms", "met" if worst and statistics.median(worst) < 100 else "MISSED",
             "", f"without old rows: {med_range(col(b, 'lag_max'), 'ms', 0)}"),
            (sc, "  recording wait p99 / p50", f"{statistics.median(col(w, 'lag_p99')):.0f} / {statistics.median(col(w, 'lag_p50')):.0f} ms"
             if col(w, "lag_p99") else "n/a", "", "", "",
             f"without: {statistics.median(col(b, 'lag_p99')):.0f} / {statistics.median(col(b, 'lag_p50')):.0f} ms" if col(b, "lag_p99") else ""),
            (sc, "  longest silence of the runner's debug log during the burst (the loop stalled)",
             med_range(col(w, "silence_ms"), "ms", 0), "", "", "", f"without: {med_range(col(b, 'silence_ms'), 'ms', 0)}"),
            (sc, "  retention batches (500 rows) that ran during the burst, of all; rows deleted by the end",
             f"{batches}; " + ", ".join(f"{r['deleted']:,}" for r in w), "", "", "", ""),
            (sc, "  slot → last record (finished_at)", med_range(col(w, "last_record"), "s", 2), "", "", "",
             f"without: {med_range(col(b, 'last_record'), 's', 2)}"),
        ]

    # ---- scenario 7: start-up to READY=1 with 100,000 jobs ----

    def startup(self):
        import socket
        log(f"start-up: {STARTUP_JOBS:,} jobs ('M H * * *', 1,440 distinct expressions), time to READY=1")
        db = self.new_db("startup")
        now = time.time()
        self.insert_jobs(db, [(f"job-{k:06d}", f"{k % 60} {(k // 60) % 24} * * *", ["/usr/bin/true"], 5,
                               next_daily(now, k % 60, (k // 60) % 24)) for k in range(STARTUP_JOBS)])
        path = os.path.join(os.path.dirname(db), "notify.sock")
        times, rss, hwm = [], [], []
        busy_from = time.time()
        for i in range(self.m["startup_runs"]):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(path)
            sock.settimeout(120)
            logf = open(db + f".runner{i}.log", "w")
            t0 = time.perf_counter()
            p = subprocess.Popen([self.bin, "--db", db, "run"], env=dict(self.env, NOTIFY_SOCKET=path),
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=logf)
            logf.close()
            self.remember_pid(p.pid)
            try:
                while True:
                    msg = sock.recv(4096).decode(errors="replace")
                    if "READY=1" in msg.split("\n"):
                        break
                dt = (time.perf_counter() - t0) * 1000
                sample = proc_sample(p.pid)
                times.append(dt)
                rss.append(sample["VmRSS"] / 1024)
                hwm.append(sample["VmHWM"] / 1024)
                log(f"  run {i + 1}: READY=1 after {dt:.0f} ms; VmRSS {rss[-1]:.1f} MB (peak {hwm[-1]:.1f} MB)")
            except socket.timeout:
                self.notes.append(f"start-up run {i + 1}: no READY=1 within 120 s")
            finally:
                self.stop(p)
                sock.close()
        self.busy.append((busy_from, time.time()))
        self.startup_result = dict(ms=times, rss_mb=rss, hwm_mb=hwm)
        med = statistics.median(times) if times else float("nan")
        self.rows += [
            (f"start-up, {STARTUP_JOBS:,} jobs", "exec of `cronmgr run` → READY=1 on $NOTIFY_SOCKET",
             med_range([t / 1000 for t in times], "s", 2), "< 1 s", "met" if med < 1000 else "MISSED", "", ""),
            (f"start-up, {STARTUP_JOBS:,} jobs", "  VmRSS at READY (peak VmHWM)",
             f"{statistics.median(rss):.0f} MB (peak {statistics.median(hwm):.0f} MB)" if rss else "n/a", "", "", "", ""),
        ]

    # ---- scenario: `apply --check` of one large job file ----

    def apply_check(self):
        """`apply --check` must grow linearly with the number of jobs (it once was quadratic)."""
        self.apply_result = {}
        for n in APPLY_JOBS:
            path = os.path.join(self.work, f"apply-{n}.toml")
            with open(path, "w") as f:
                for k in range(n):
                    f.write(f'[[job]]\nname = "job-{k:06d}"\nschedule = "{k % 60} {(k // 60) % 24} * * *"\n'
                            f'argv = ["/usr/bin/true"]\ncategory = "BENCH"\ntimeout = "5m"\n\n')
            config = os.path.join(self.work, "apply-config.toml")
            with open(config, "w") as f:
                f.write('[executors.shell]\nallow = ["/usr/bin/true"]\n')
            times = []
            for _ in range(self.m["startup_runs"]):
                t0 = time.perf_counter()
                subprocess.run([self.bin, "--config", config, "apply", "--check", path], env=self.env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)
                times.append(time.perf_counter() - t0)
            log(f"apply --check, {n:,} jobs: " + ", ".join(f"{t:.2f} s" for t in times))
            self.apply_result[n] = times
            os.unlink(path)
        big = max(APPLY_JOBS)
        med = statistics.median(self.apply_result[big])
        for n in APPLY_JOBS:
            self.rows.append((f"apply --check, {n:,} jobs", "one file, every job checked as `add` does",
                              med_range(self.apply_result[n], "s", 2), "< 3 s" if n == big else "",
                              ("met" if med < 3 else "MISSED") if n == big else "", "", ""))

    # ---- scenario 8: durability, the burst under synchronous=FULL ----

    def durability(self):
        runs = []
        for i in range(self.m["durability_runs"]):
            r, _, _, _ = self.burst_once(f"full{i}", f"burst, synchronous=FULL, run {i + 1}/{self.m['durability_runs']}",
                                      env={"CRONMGR_SYNCHRONOUS": "full"})
            runs.append(r)
        # The cost of one commit under each mode, on this disk.
        commit = {}
        for mode in ("NORMAL", "FULL"):
            path = os.path.join(self.work, f"commit-{mode}.db")
            con = sqlite3.connect(path, isolation_level=None)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(f"PRAGMA synchronous={mode}")
            con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
            t0 = time.perf_counter()
            for k in range(1000):
                con.execute("BEGIN IMMEDIATE")
                con.execute("INSERT INTO t (v) VALUES (?)", (f"row {k}",))
                con.execute("COMMIT")
            commit[mode] = (time.perf_counter() - t0)  # seconds per 1000 = ms per commit
            con.close()
        self.durability_result = dict(full=runs, commit_ms=commit)
        normal = [r["last_record"] for r in getattr(self, "bursts", []) if r["last_record"] is not None]
        full = [r["last_record"] for r in runs if r["last_record"] is not None]
        ok = full and statistics.median(full) < 5 and all(r["complete"] for r in runs)
        self.rows += [
            ("durability: burst, synchronous=NORMAL", "slot → last record (the default; scenario 2's runs)",
             med_range(normal, "s", 2), "< 5 s", ("met" if statistics.median(normal) < 5 else "MISSED") if normal else "",
             "", f"{commit['NORMAL']:.2f} ms a commit (1,000 one-row commits, WAL)"),
            ("durability: burst, synchronous=FULL", "slot → last record (CRONMGR_SYNCHRONOUS=full)",
             med_range(full, "s", 2), "< 5 s", "met" if ok else "MISSED", "",
             f"{commit['FULL']:.2f} ms a commit (fsync of the WAL each)"),
        ]

    # ---- scenario 13: soak ----

    def soak(self):
        secs = self.m["soak_s"]
        log(f"soak: {SOAK_JOBS} jobs every {SOAK_EVERY} s ('S-59/{SOAK_EVERY} * * * * *', {SOAK_JOBS // SOAK_EVERY} a second) "
            f"for {secs} s; RSS and open fds every {SOAK_SAMPLE} s")
        db = self.new_db("soak")
        first = math.ceil(time.time()) + 5
        jobs = []
        for k in range(SOAK_JOBS):
            off = k % SOAK_EVERY
            t = first + (off - first) % SOAK_EVERY
            # a-59/n, not a/n: cronmgr refuses a/n (implementations read it differently)
            jobs.append((f"soak-{k:04d}", f"{off}-59/{SOAK_EVERY} * * * * *", ["/usr/bin/true"], 5, t))
        self.insert_jobs(db, jobs)
        p, ready = self.start_runner(db, "--max-concurrent", "16")
        busy_from = time.time()

        def sample():
            x = proc_sample(p.pid)
            x["fds"] = len(os.listdir(f"/proc/{p.pid}/fd"))
            return x

        # Quiet moments, when no execution is in flight (each one holds threads and fds for a
        # while): before the first slot, and after every job was disabled and the runner nudged.
        before = sample()
        fds_before = fd_targets(p.pid)
        if time.time() > first - 0.2:
            self.notes.append("soak: the runner got ready only after the first slot; 'before' may include work")
        samples = []
        end = ready + secs
        next_at = ready + SOAK_SAMPLE
        while True:
            time.sleep(max(0.0, next_at - time.time()))
            samples.append(sample())
            next_at += SOAK_SAMPLE
            if next_at > end + 0.5:
                break
        con = sqlite3.connect(db, timeout=10)
        with con:
            con.execute("UPDATE jobs SET is_active = 0")
        con.close()
        p.send_signal(signal.SIGUSR1)  # reload the jobs now
        time.sleep(5)
        after = sample()
        new_fds, fd_leak = fd_growth(fds_before, fd_targets(p.pid))
        self.stop(p)
        self.busy.append((busy_from, time.time()))
        statuses = dict(self.query(db, "SELECT status, count(*) FROM executions GROUP BY status"))
        if sum(statuses.values()) < SOAK_JOBS:
            self.notes.append(f"soak: only {sum(statuses.values())} executions; see {db}.runner.log")
        rss = [x["VmRSS"] / 1024 for x in samples]
        fds = [x["fds"] for x in samples]
        thr = [x["threads"] for x in samples]
        q = {k: (before[k], after[k]) for k in ("VmRSS", "fds", "threads")}
        self.soak_result = dict(rss_mb=rss, fds=fds, threads=thr, statuses=statuses, quiet=q, new_fds=new_fds)
        log(f"  RSS {['%.1f' % x for x in rss]} MB; fds {fds}; threads {thr}; executions {statuses}; "
            f"quiet before/after {q}")
        # Flat: no growth over the second half of the window (the first half may hold warm-up).
        half = len(rss) // 2
        grew = rss[-1] - rss[half]
        per_k = grew * 1024 / max(1, SOAK_JOBS // SOAK_EVERY * SOAK_SAMPLE * (len(rss) - 1 - half)) * 1000
        expected = SOAK_JOBS // SOAK_EVERY * secs
        sc = f"soak, {SOAK_JOBS} jobs every {SOAK_EVERY} s ({secs / 60:.0f} min)"

        def short(t):  # files of the soak's folder by their name
            return os.path.basename(t) if os.path.dirname(t) == os.path.dirname(db) else t
        self.rows += [
            (sc, f"VmRSS first / max / last ({len(samples)} samples, every {SOAK_SAMPLE} s, the first at +{SOAK_SAMPLE} s)",
             f"{rss[0]:.1f} / {max(rss):.1f} / {rss[-1]:.1f} MB", "flat", "met" if grew <= 0.5 else "MISSED", "", ""),
            (sc, "  VmRSS growth over the second half of the window",
             f"{grew:+.2f} MB (≈ {per_k:.0f} KB per 1,000 executions)", "≤ 0.5 MB", "", "", ""),
            (sc, "  VmRSS quiet, before the first slot → after the last (jobs disabled)",
             f"{before['VmRSS'] / 1024:.1f} → {after['VmRSS'] / 1024:.1f} MB", "", "", "", ""),
            (sc, "open file descriptors first / max / last (in-flight executions hold some)",
             f"{fds[0]} / {max(fds)} / {fds[-1]}", "", "", "", ""),
            (sc, "  open file descriptors quiet, before → after (new ones: files opened once and kept are not a leak)",
             f"{before['fds']} → {after['fds']}" + (f" (new: {', '.join(short(t) for t in new_fds)})" if new_fds else ""), "flat",
             "MISSED" if fd_leak else "met", "", ""),
            (sc, "threads first / max / last; quiet before → after",
             f"{thr[0]} / {max(thr)} / {thr[-1]}; {before['threads']} → {after['threads']}", "flat",
             "met" if after["threads"] <= before["threads"] else "MISSED", "", ""),
            (sc, "  executions by status", ", ".join(f"{k} {v:,}" for k, v in sorted(statuses.items()))
             + f" (about {expected:,} due)", "", "", "", ""),
        ]

    def cron_latency_rows(self, cron):
        samples = []
        path = os.path.join(self.work, "cron-latency")
        if cron.ok and os.path.exists(path):
            with open(path) as f:
                for line in f:
                    t = float(line)
                    minute = math.floor(t / 60) * 60
                    if any(a - 1 <= minute <= b + 1 for a, b in self.busy):
                        continue
                    samples.append((t - minute) * 1000)
        self.cron_latency = samples
        ours = {r[1]: r for r in self.rows}
        for i, r in enumerate(self.rows):
            if r[0].startswith("fire latency") and r[5] is None:
                p = 50 if "p50" in r[1] else 99
                val = (f"{pct(samples, p):.1f} ms ({len(samples)} samples, minute jobs)" if samples
                       else cron.why if not cron.ok else "n/a (no sample recorded)")
                self.rows[i] = r[:5] + (val,) + r[6:]
        del ours

    def cron_bursts(self, cron, cron_proc, boundary):
        results = []
        if cron.ok and cron_proc:
            for i in range(self.m["cron_bursts"]):
                if i > 0 or boundary - time.time() < 8:
                    boundary = (math.floor((time.time() + 8) / 60) + 1) * 60
                lt = time.localtime(boundary)
                path = os.path.join(self.work, f"cron-burst{i}")
                lines = [f"{lt.tm_min} {lt.tm_hour} * * * root /usr/bin/date +\\%s.\\%N >> {path}"] * BURST_JOBS
                cron.write_crontab("cronmgr-bench-burst", lines)
                log(f"cron burst {i + 1}/{self.m['cron_bursts']}: {BURST_JOBS} lines in /etc/cron.d firing at "
                    f"{time.strftime('%H:%M', lt)}")
                count, last_change = 0, time.time()
                while time.time() < boundary + 180:
                    time.sleep(0.5)
                    n = count_lines(path)
                    if n != count:
                        count, last_change = n, time.time()
                    if count >= BURST_JOBS or (count and time.time() - last_change > 20):
                        break
                cron.remove_crontab("cronmgr-bench-burst")
                starts = []
                if os.path.exists(path):
                    with open(path) as f:
                        starts = [float(x) - boundary for x in f if x.strip()]
                results.append(dict(n=len(starts), last=max(starts) if starts else None,
                                    p50=pct(starts, 50) if starts else None))
                log(f"  {results[-1]}")
            # Let the forks of the last burst finish before stopping cron.
            time.sleep(2)
        self.cron_burst = results
        for i, r in enumerate(self.rows):
            if r[1].startswith("slot → last start") and r[5] is None:
                if results:
                    lasts = [x["last"] for x in results if x["last"] is not None]
                    ns = ", ".join(str(x["n"]) for x in results)
                    val = med_range(lasts, "s", 2) + f"; started {ns} of {BURST_JOBS}"
                else:
                    val = cron.why
                self.rows[i] = r[:5] + (val,) + r[6:]

    # ---- output ----

    def table(self):
        head = ("scenario", "metric", "cronmgr", "target", "", "Debian cron", "machine limit")
        rows = [tuple("" if c is None else str(c) for c in r) for r in self.rows]
        widths = [max(len(x[i]) for x in [head] + rows) for i in range(len(head))]
        out = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
               "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        for r in rows:
            out.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
        return "\n".join(out)


class Cron:
    """Debian's cron, run in the foreground by us, fed through files in /etc/cron.d."""

    def __init__(self, bench, enabled):
        self.bench = bench
        self.ok = False
        self.why = "n/a (skipped: --no-cron)"
        self.proc = None
        self.pidfile_existed = os.path.exists("/run/crond.pid")
        if enabled:
            self.ok, self.why = self.install()

    def install(self):
        if shutil.which("cron"):
            return True, ""
        if os.geteuid() != 0:
            return False, "n/a (cron is not installed and installing it needs root)"
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        log("installing Debian's cron (apt-get install -y cron)")
        for attempt in (["apt-get", "install", "-y", "-q", "cron"],
                        ["sh", "-c", "apt-get update -q && apt-get install -y -q cron"]):
            r = subprocess.run(attempt, env=env, capture_output=True, text=True)
            if r.returncode == 0 and shutil.which("cron"):
                return True, ""
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        return False, f"n/a (apt-get install cron failed: {last})"

    def write_crontab(self, name, lines):
        path = f"/etc/cron.d/{name}"
        self.bench.remember_file(path)
        tmp = f"/etc/cron.d/.{name}.tmp"  # cron ignores names with dots
        self.bench.remember_file(tmp)
        with open(tmp, "w") as f:
            f.write("SHELL=/bin/sh\nPATH=/usr/bin:/bin\nMAILTO=\"\"\n")
            f.write("\n".join(lines) + "\n")
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)

    def remove_crontab(self, name):
        try:
            os.unlink(f"/etc/cron.d/{name}")
        except FileNotFoundError:
            pass

    def start(self):
        running = subprocess.run(["pgrep", "-x", "cron"], capture_output=True, text=True).stdout.split()
        if running:
            self.ok, self.why = False, f"n/a (a cron is already running here, pid {running[0]}; not disturbing it)"
            return None
        if not self.pidfile_existed:
            self.bench.remember_file("/run/crond.pid")  # cron writes it; run.sh's trap removes it
        self.log = open(os.path.join(self.bench.work, "cron.log"), "w")
        self.proc = subprocess.Popen(["cron", "-f"], stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.bench.remember_pid(self.proc.pid)
        time.sleep(0.5)
        if self.proc.poll() is not None:
            self.ok, self.why = False, f"n/a (cron -f exited with {self.proc.returncode}; see cron.log)"
            return None
        return self.proc

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.pidfile_existed:
            try:
                os.unlink("/run/crond.pid")
            except FileNotFoundError:
                pass


def starting_lines(path):
    """execution id -> when the runner logged 'starting' it (after the claim, before the spawn)."""
    out = {}
    with open(path) as f:
        for line in f:
            if " INFO starting " in line and "execution=" in line:
                stamp = line.split()[0].rstrip("Z")[:26]
                t = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp()
                out[int(line.rsplit("execution=", 1)[1].split()[0])] = t
    return out


def log_stamps(path):
    """(epoch, line) of every line of a runner log (tracing's RFC 3339 stamp first)."""
    out = []
    with open(path) as f:
        for line in f:
            head = line.split(" ", 1)[0]
            if not head.endswith("Z") or "T" not in head:
                continue
            try:
                t = datetime.strptime(head.rstrip("Z")[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp()
            except ValueError:
                continue
            out.append((t, line))
    return out


def next_daily(now, minute, hour):
    """The next HH:MM (UTC) after now, in epoch seconds."""
    d = datetime.fromtimestamp(now, timezone.utc).replace(hour=hour, minute=minute, second=0, microsecond=0)
    t = d.timestamp()
    return t if t > now else t + 86400


def count_lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def proc_ticks(pid):
    """utime + stime of a process (all its threads, not its children), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def fd_targets(pid):
    """What a process's open descriptors point at: paths as they are, and the kind of the rest
    ('pipe', 'socket', 'anon_inode:[eventfd]', 'anon_inode:[pidfd]', ...)."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            t = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        out.append(t.split(":[", 1)[0] if t.startswith(("pipe:", "socket:")) else t)
    return out


def fd_growth(before, after):
    """The descriptors open at `after` and not at `before` (a multiset difference), and whether
    they look like a leak: any more of a kind each execution takes (pipe, socket, eventfd,
    pidfd, any other anonymous inode), or a file opened more than once more. One more of a
    file is what a first use opens and keeps (the checkpoint thread's connection to the
    database and its WAL, /dev/null for children's stdin); a leak over a soak's thousands of
    executions, reloads or minutes shows many."""
    new = collections.Counter(after) - collections.Counter(before)
    leak = any(not t.startswith("/") or n > 1 for t, n in new.items())
    return sorted(new.elements()), leak


def proc_sample(pid):
    """RSS, private memory, CPU, context switches and major page faults of a process, summed
    over its threads."""
    s = {"t": time.time(), "vol": 0, "invol": 0, "sched_ns": 0, "threads": 0}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                s[k] = int(v.split()[0])
    s.update(private_memory(pid))
    s["ticks"] = proc_ticks(pid)
    with open(f"/proc/{pid}/stat") as f:
        s["majflt"] = int(f.read().rsplit(")", 1)[1].split()[9])
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        s["vol"] += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        s["invol"] += int(line.split()[1])
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                s["sched_ns"] += int(f.read().split()[0])
            s["threads"] += 1
        except FileNotFoundError:
            pass
    return s


def private_memory(pid):
    """The memory a process costs the machine, in kB, from /proc/PID/smaps_rollup: Private_Dirty
    (pages only it has written: heap, stacks, written data; what it would free by exiting) and
    Pss_Anon (its anonymous pages, each shared one divided among its sharers). Clean file pages
    (the binary's code and read-only data) count in VmRSS but cost nothing: they are the page
    cache's, shared, and dropped without a write when memory is short. Zeros if the file cannot be
    read (a kernel before 4.14, or another user's process without root)."""
    out = {"Private_Dirty": 0, "Pss_Anon": 0, "Private_Clean": 0}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in out:
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def proactive_reclaim():
    """How the kernel pages out memory nobody touched, if it does (DAMON's `pageout` scheme), as
    words; None when it does not (or we cannot tell)."""
    base = "/sys/kernel/mm/damon/admin/kdamonds"
    found = []
    try:
        for k in sorted(os.listdir(base)):
            kd = os.path.join(base, k)
            if not os.path.isdir(kd) or open(os.path.join(kd, "state")).read().strip() != "on":
                continue
            for c in sorted(os.listdir(os.path.join(kd, "contexts"))):
                ctx = os.path.join(kd, "contexts", c)
                if not os.path.isdir(ctx):
                    continue
                aggr_us = int(open(os.path.join(ctx, "monitoring_attrs/intervals/aggr_us")).read())
                schemes = os.path.join(ctx, "schemes")
                for sc in sorted(os.listdir(schemes)):
                    d = os.path.join(schemes, sc)
                    if os.path.isdir(d) and open(os.path.join(d, "action")).read().strip() == "pageout":
                        age = int(open(os.path.join(d, "access_pattern/age/min")).read())
                        found.append(age * aggr_us / 1e6)
    except (OSError, ValueError):
        return None
    if not found:
        return None
    return f"pages out memory unused for {min(found):.0f} s (DAMON pageout)"


def summarize_idle(samples):
    a, b = samples[0], samples[-1]
    minutes = (b["t"] - a["t"]) / 60
    per_min, clean_min = [], []
    i = 0
    for j in range(1, len(samples)):  # CPU of each whole minute, to show the spread
        if samples[j]["t"] - samples[i]["t"] >= 60:
            cpu = (samples[j]["sched_ns"] - samples[i]["sched_ns"]) / 1e6 / ((samples[j]["t"] - samples[i]["t"]) / 60)
            per_min.append(cpu)
            if samples[j]["majflt"] == samples[i]["majflt"]:
                clean_min.append(cpu)  # a minute that read nothing back from disk
            i = j
    vol, invol = b["vol"] - a["vol"], b["invol"] - a["invol"]
    return dict(
        minutes=minutes,
        rss_max_kb=max(s["VmRSS"] for s in samples),
        hwm_kb=b["VmHWM"],
        private_dirty_max_kb=max(s["Private_Dirty"] for s in samples),
        pss_anon_max_kb=max(s["Pss_Anon"] for s in samples),
        private_clean_kb=b["Private_Clean"],
        cpu_ms_min=(b["sched_ns"] - a["sched_ns"]) / 1e6 / minutes,
        cpu_ms_min_max=max(per_min) if per_min else float("nan"),
        ticks_ms_min=(b["ticks"] - a["ticks"]) * 1000 / CLK_TCK / minutes,
        vol=vol, invol=invol,
        wakeups_min=vol / minutes,
        majflt=b["majflt"] - a["majflt"],
        minutes_measured=len(per_min),
        clean_minutes=len(clean_min),
        clean_cpu_ms_min=statistics.mean(clean_min) if clean_min else float("nan"),
        threads=b["threads"],
    )


# ---- the machine's own limit, in a process of its own (it reaps any child) ------------------


def machine_limit(work):
    os.makedirs(work, exist_ok=True)
    here = os.path.dirname(os.path.abspath(__file__))
    exe = os.path.join(work, "spawn")
    if shutil.which("cc") and subprocess.run(["cc", "-O2", "-o", exe, os.path.join(here, "spawn.c")]).returncode == 0:
        def loop(how):
            return float(subprocess.run([exe, str(SPAWN_N), str(SPAWN_PARALLEL), "/usr/bin/true", how],
                                        check=True, capture_output=True, text=True).stdout)
        spawn, spawner = loop("posix_spawn"), "C posix_spawn loop"
        # The way cronmgr spawns (a vfork-style clone that execs at once): its own floor.
        spawn_clone = loop("clone")
    else:  # no C compiler: the same loop in Python (a little slower)
        t0 = time.perf_counter()
        inflight = started = 0
        while started < SPAWN_N or inflight:
            while inflight < SPAWN_PARALLEL and started < SPAWN_N:
                os.posix_spawn("/usr/bin/true", ["true"], {})
                inflight += 1
                started += 1
            os.wait()
            inflight -= 1
        spawn, spawner = time.perf_counter() - t0, "Python os.posix_spawn loop"
        spawn_clone = None

    # Fire latency floor: spawn /usr/bin/date from here and read the instant it prints.
    lat = []
    for _ in range(100):
        r, w = os.pipe()
        t = time.time()
        pid = os.posix_spawn("/usr/bin/date", ["date", "+%s.%N"], {}, file_actions=[(os.POSIX_SPAWN_DUP2, w, 1)])
        os.close(w)
        out = os.read(r, 64)
        os.close(r)
        os.waitpid(pid, 0)
        lat.append((float(out) - t) * 1000)
        time.sleep(0.01)

    schema = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "store",
                               "migrations", "001_initial.sql")).read()

    def fresh(name):
        con = sqlite3.connect(os.path.join(work, name), isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("PRAGMA foreign_keys=ON")
        con.executescript(schema)
        now = rfc3339(time.time())
        con.execute("INSERT INTO jobs (system, name, schedule, command, created_at, updated_at) "
                    "VALUES ('default', 'j', '* * * * *', 'shell', ?, ?)", (now, now))
        return con

    ins = ("INSERT INTO executions (job_id, status, scheduled_for, started_at, triggered_by, attempt) "
           "VALUES (1, 'running', ?, ?, 'schedule', 1)")
    upd = "UPDATE executions SET status = 'success', finished_at = ?, duration_ms = 1, output = '', exit_code = 0 WHERE id = ?"
    stamps = [rfc3339(1_800_000_000 + k) for k in range(SPAWN_N)]

    con = fresh("per_tx.db")
    t0 = time.perf_counter()
    for k in range(SPAWN_N):
        con.execute("BEGIN IMMEDIATE")
        con.execute(ins, (stamps[k], stamps[k]))
        con.execute("COMMIT")
    for k in range(SPAWN_N):
        con.execute("BEGIN IMMEDIATE")
        con.execute(upd, (stamps[k], k + 1))
        con.execute("COMMIT")
    per_tx = time.perf_counter() - t0
    con.close()

    con = fresh("batched.db")
    t0 = time.perf_counter()
    con.execute("BEGIN IMMEDIATE")
    for k in range(SPAWN_N):
        con.execute(ins, (stamps[k], stamps[k]))
    con.execute("COMMIT")
    con.execute("BEGIN IMMEDIATE")
    for k in range(SPAWN_N):
        con.execute(upd, (stamps[k], k + 1))
    con.execute("COMMIT")
    batched = time.perf_counter() - t0
    con.close()
    print(json.dumps({"spawn_s": spawn, "spawn_clone_s": spawn_clone, "spawner": spawner, "date_p50_ms": pct(lat, 50), "date_p99_ms": pct(lat, 99), "sqlite_per_tx_s": per_tx, "sqlite_batched_s": batched}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin")
    ap.add_argument("--work", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-cron", action="store_true")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--machine-limit", action="store_true")
    ap.add_argument("--only", default="limit,latency,burst,durability,retention,history,stats,web,startup,apply,idle,soak",
                    help="comma-separated scenarios (limit, latency, burst, durability, retention, history, stats, web, "
                         "startup, apply, idle, soak; idle includes cron)")
    args = ap.parse_args()
    if args.machine_limit:
        machine_limit(args.work)
        return
    only = set(args.only.split(","))
    # run.sh's trap sends TERM: unwind, so cron is stopped and its files removed in order.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    b = Bench(args)
    cron = Cron(b, enabled=not args.no_cron and "idle" in only)
    began = time.time()
    load = os.getloadavg()
    log(f"mode {b.mode}; load average {load[0]:.2f} on {os.cpu_count()} CPUs; work folder {b.work}")
    try:
        if "limit" in only:
            b.machine_limit()
        if cron.ok and "idle" in only:
            cron.write_crontab("cronmgr-bench-latency",
                               [f"* * * * * root /usr/bin/date +\\%s.\\%N >> {b.work}/cron-latency"])
            cron.start()
        if "latency" in only:
            b.fire_latency()
        if "burst" in only:
            b.burst()
        if "durability" in only:
            b.durability()
        if "retention" in only:
            b.retention_burst()
        if "history" in only:
            b.history_status()
        if "stats" in only:
            b.stats()
        if "web" in only:
            b.web()
        if "startup" in only:
            b.startup()
        if "apply" in only:
            b.apply_check()
        if "idle" in only:
            cron_proc, boundary = b.idle(cron)
            b.cron_bursts(cron, cron_proc, boundary)
        b.cron_latency_rows(cron)
        if "soak" in only:
            b.soak()
    finally:
        cron.stop()
    load2 = os.getloadavg()
    print()
    print(f"cronmgr benchmark, {b.mode} mode, {time.strftime('%Y-%m-%d %H:%M %Z')}, "
          f"{os.cpu_count()} CPUs, load average {load[0]:.1f} at start and {load2[0]:.1f} at end, "
          f"{(time.time() - began) / 60:.1f} min")
    print("figures: median over runs (min–max, runs); percentiles are nearest-rank within a run")
    print()
    print(b.table())
    for n in b.notes:
        print(f"note: {n}")
    with open(os.path.join(b.work, "results.json"), "w") as f:
        json.dump({k: getattr(b, k, None) for k in
                   ("limit", "latency", "bursts", "idle_result", "cron_latency", "cron_burst", "durability_result",
                    "retention", "history_result", "stats_result", "web_result", "startup_result", "apply_result", "soak_result")}, f, default=str)


if __name__ == "__main__":
    main()
