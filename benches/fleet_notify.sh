#!/bin/bash
# Idle fleet runners on PostgreSQL, and how soon they act on a CLI change (docs/fleet.md, "How
# runners learn of changes"). Root: starts a private PostgreSQL 15 on port 55432 that logs every
# statement, in $WORK (default /tmp/fleet_notify), and stops it at the end.
#
#   benches/fleet_notify.sh BINARY LABEL     e.g. target/debug/cronmgr notify
#
# idle:  1 and 2 runners sharing a schema, one daily job, 10 s to settle, then over 60 s: the
#        statements each runner sent (the server's log_statement=all log, by application_name)
#        and the times it was put on a CPU (the sum over its threads of schedstat's 3rd field).
# delay: one idle runner; 10 times, at a random phase, `add` an every-second job: the add's
#        return to the runner's reload (its debug log), and to the job's first start.
set -u
B=$(realpath "$1"); L=$2
WORK=${WORK:-/tmp/fleet_notify}
PG=/usr/lib/postgresql/15/bin
U=postgres://postgres@127.0.0.1:55432/postgres
OPTS="-p 55432 -k $WORK/pg -c listen_addresses=127.0.0.1 -c log_statement=all -c log_line_prefix='%m [%p] %a '"
LOG=$WORK/pg/server.log
mkdir -p $WORK/pg && chown postgres:postgres $WORK/pg
if [ ! -d $WORK/pg/data ]; then
  su postgres -s /bin/sh -c "$PG/initdb -D $WORK/pg/data -A trust -U postgres >/dev/null"
fi
su postgres -s /bin/sh -c "$PG/pg_ctl -D $WORK/pg/data -o \"$OPTS\" -l $LOG -w start >/dev/null"
trap 'su postgres -s /bin/sh -c "$PG/pg_ctl -D $WORK/pg/data -m fast -w stop >/dev/null"' EXIT

fresh() { # schema dir
  psql -X -q "$U" -c "drop schema if exists $1 cascade; create schema $1" 2>/dev/null
  rm -rf $2 && mkdir -p $2
  printf '[executors]\nenabled = ["shell"]\n[executors.shell]\nallow = ["/usr/bin/true"]\n' > $2/config.toml
  export CRONMGR_CONFIG=$2/config.toml
}

idle() { # runners
  local N=$1 S=idle_${L}_$1 W=$WORK/idle_${L}_$1 pids=() i
  fresh $S $W
  for i in $(seq 1 $N); do
    local DB="$U?application_name=${S}_r$i&options=-csearch_path%3D$S"
    [ $i = 1 ] && $B --db "$DB" add daily --schedule '0 0 3 * * *' -- /usr/bin/true >/dev/null
    RUST_LOG=cronmgr=info $B --db "$DB" run > $W/run$i.log 2>&1 &
    pids+=($!)
  done
  sleep 10
  count() { grep -cE "\] ${S}_r$1 LOG:  (statement|execute)" $LOG; }
  sched() { cat /proc/$1/task/*/schedstat | awk '{s+=$3} END {print s}'; }
  local q0=() w0=()
  for i in $(seq 1 $N); do q0[$i]=$(count $i); w0[$i]=$(sched ${pids[$((i-1))]}); done
  sleep 60
  for i in $(seq 1 $N); do
    echo "$L idle runners=$N runner=$i statements_per_min=$(( $(count $i) - q0[$i] )) wakeups_per_min=$(( $(sched ${pids[$((i-1))]}) - w0[$i] ))"
  done
  kill "${pids[@]}"; wait
}

delay() { # rounds
  local S=delay_$L W=$WORK/delay_$L i k
  fresh $S $W
  local DB="$U?options=-csearch_path%3D$S"
  $B --db "$DB" settings show >/dev/null 2>&1
  RUST_LOG=cronmgr=debug $B --db "$DB" run > $W/run.log 2>&1 &
  local pid=$!
  sleep 5
  for i in $(seq 1 $1); do
    sleep 0.$((RANDOM % 10))$((RANDOM % 10))
    $B --db "$DB" add j$i --schedule '*/1 * * * * *' -- /usr/bin/true >/dev/null
    local done_at=$(date +%s.%N)
    for k in $(seq 1 40); do grep -q "starting job=j$i " $W/run.log && break; sleep 0.1; done
    $B --db "$DB" disable j$i >/dev/null
    sleep 1.5
    local reload=$(grep "jobs or settings changed: reloading" $W/run.log | awk '{print $1}' \
      | while read t; do s=$(date -d "$t" +%s.%N); awk -v a=$s -v b=$done_at 'BEGIN{if (a>b-0.5) print a}'; done | head -1)
    local start=$(date -d "$(grep "starting job=j$i " $W/run.log | head -1 | awk '{print $1}')" +%s.%N)
    awk -v r=$reload -v s=$start -v d=$done_at -v l=$L -v i=$i 'BEGIN{printf "%s delay round=%d reload_after_add_ms=%.0f first_start_after_add_ms=%.0f\n", l, i, (r-d)*1000, (s-d)*1000}'
  done
  kill $pid; wait
}

idle 1
idle 2
delay 10
