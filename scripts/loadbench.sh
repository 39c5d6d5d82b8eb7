#!/usr/bin/env bash
# Load bench: mock-upstream alone, the floor (a bare hyper reverse proxy: `mock-upstream
# --proxy-to`) and InstaGen (auth, limits, metering, journal and usage writes all on) in
# front of the same mock, in one run; non-streaming and streaming chat at concurrency
# 1/64/256 (streams at 32 too), then the Responses and Messages endpoints translated to the
# chat mock. Prints RPS, p50/p99 latency, CPU µs per request, RSS and TTFT at c=1
# (scripts/ttft.py), and each InstaGen figure as a ratio to the floor's: ratios are the
# goals (docs/performance.md), since the machine's own speed varies from day to day. With
# 2+ cores, wrk runs on core 0 and the servers share the rest.
# Needs `wrk` (Debian: apt-get install wrk). Traffic stays on 127.0.0.1.
#
# Usage: scripts/loadbench.sh [seconds per run, default 10] [rounds, default 1]
# With rounds > 1 each load runs the floor and InstaGen alternately that many times; the
# table shows each figure's median and each ratio's median over the rounds' pairs (the VM's
# speed drifts by ±10–20 % between runs seconds apart, so one pair can miss a goal by noise);
# the translated endpoints' ratios to chat are likewise medians over that many rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
ROUNDS=${2:-1}

. scripts/bench-lib.sh
bench_require "apt-get install wrk" wrk
bench_bin
WORK=$(mktemp -d)
MOCK_PORT=$((20000 + RANDOM % 5000))
FLOOR_PORT=$((MOCK_PORT + 1))
GW_PORT=$((MOCK_PORT + 2))
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

# Client and servers on separate cores where there are two or more.
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  LOAD="taskset -c 0"
  SERVE="taskset -c 1-$(($(nproc) - 1))"
else
  LOAD=""
  SERVE=""
fi

bench_config "$WORK/instagen.toml" $GW_PORT $MOCK_PORT "$WORK"
bench_native "$WORK/instagen.toml" "$WORK" $MOCK_PORT

MOCK_THREADS=1 $SERVE $BIN/mock-upstream --listen 127.0.0.1:$MOCK_PORT >/dev/null &
MOCK_PID=$!
$SERVE $BIN/mock-upstream --listen 127.0.0.1:$FLOOR_PORT --proxy-to 127.0.0.1:$MOCK_PORT >/dev/null &
FLOOR_PID=$!
KEY=$(bench_key "$WORK/instagen.toml" bench)
$SERVE $BIN/instagen --config "$WORK/instagen.toml" serve &
GW_PID=$!
bench_wait $GW_PORT
sleep 1
rss() { awk '/VmRSS/{print $2}' /proc/$1/status; }
IDLE_RSS=$(rss $GW_PID)
FLOOR_IDLE_RSS=$(rss $FLOOR_PID)

# One request script per mode (the floor and the mock get the chat body); non-streamed
# chat is the `plain` mode here.
bench_loads "$WORK" plain

cpu_ticks() { awk '{print $14 + $15}' /proc/$1/stat; }
HZ=$(getconf CLK_TCK)
# wrk's latency ("812.00us", "1.20ms", "2.01s") in µs.
us() { awk -v v="$1" 'BEGIN{ n = v + 0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else if (v ~ /s$/) print n * 1e6; else print "n/a" }'; }

# per_request TICKS_BEFORE TICKS_AFTER REQUESTS -> CPU µs a request (or n/a)
per_request() { awk -v b="$1" -v a="$2" -v hz="$HZ" -v n="${3:-0}" 'BEGIN{ if (n>0 && a>b) printf "%.1f", (a-b)/hz*1e6/n; else print "n/a" }'; }

# run PORT MODE CONC [PID] -> "rps p50_us p99_us cpu_us_per_req non2xx mock_cpu_us_per_req"
# (the mock's CPU a request behind this server: the mock shares the servers' core, and a
# server that never idles lets it answer only a few requests a wake-up, at more a request)
run() {
  local port=$1 mode=$2 conc=$3 pid=${4:-} threads=2
  [ "$conc" -eq 1 ] && threads=1
  local before=0 after=0 m_before m_after
  [ -n "$pid" ] && before=$(cpu_ticks "$pid")
  m_before=$(cpu_ticks "$MOCK_PID")
  KEY=$KEY $LOAD wrk -t$threads -c$conc -d${DURATION}s --latency -s "$WORK/$mode.lua" \
    "http://127.0.0.1:$port" > "$WORK/out" 2>&1 || true
  [ -n "$pid" ] && after=$(cpu_ticks "$pid")
  m_after=$(cpu_ticks "$MOCK_PID")
  local rps p50 p99 reqs errs cpu mock_cpu
  rps=$(awk '/Requests\/sec/{print $2}' "$WORK/out")
  p50=$(us "$(awk '$1=="50%"{print $2}' "$WORK/out")")
  p99=$(us "$(awk '$1=="99%"{print $2}' "$WORK/out")")
  reqs=$(awk '/requests in/{print $1}' "$WORK/out")
  errs=$(awk '/Non-2xx/{print $4}' "$WORK/out")
  cpu=$(per_request "$before" "$after" "$reqs")
  mock_cpu=$(per_request "$m_before" "$m_after" "$reqs")
  echo "${rps:-0} ${p50:-n/a} ${p99:-n/a} $cpu ${errs:-0} $mock_cpu"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b+0 > 0 && a != "n/a") printf "%.2f", a/b; else print "n/a" }'; }

printf "\nmachine: %s cores, %s; %ss per run, %s round(s); wrk %s, servers %s\n" \
  "$(nproc)" "$(awk -F: '/model name/{print $2; exit}' /proc/cpuinfo | xargs)" "$DURATION" "$ROUNDS" \
  "${LOAD:-unpinned}" "${SERVE:-unpinned}"
printf "idle RSS: InstaGen %s KiB, floor %s KiB\n\n" "$IDLE_RSS" "$FLOOR_IDLE_RSS"
printf "%-7s %-4s | %-8s %-7s | %-8s %-7s %-8s %-6s | %-8s %-7s %-8s %-6s | %-5s %-5s %-5s %-15s %s\n" \
  mode conc "mock rps" p50µs "floor rps" p50µs p99µs cpuµs "IG rps" p50µs p99µs cpuµs "rps×" "cpu×" "p99×" "+p50µs floor/IG" "mock cpuµs behind floor/IG"
# median V...: the middle value (the mean of the middle two), "n/a" when any is.
median() { printf '%s\n' "$@" | sort -g | awk '/n\/a/{bad=1} {v[NR]=$1} END{ if (bad || NR == 0) print "n/a"; else if (NR % 2) print v[(NR+1)/2]; else printf "%.2f\n", (v[NR/2] + v[NR/2+1]) / 2 }'; }
for mode in plain stream; do
  # Streams at c=32 too: the goal's own concurrency.
  concs="1 64 256"
  [ $mode = stream ] && concs="1 32 64 256"
  for conc in $concs; do
    read -r m_rps m_p50 _ _ _ < <(run $MOCK_PORT $mode $conc)
    F_RPS=() F_P50=() F_P99=() F_CPU=() F_MOCK=() G_RPS=() G_P50=() G_P99=() G_CPU=() G_MOCK=()
    R_RPS=() R_CPU=() R_P99=() ERRS=0
    for _ in $(seq "$ROUNDS"); do
      read -r f_rps f_p50 f_p99 f_cpu _ f_mock < <(run $FLOOR_PORT $mode $conc $FLOOR_PID)
      read -r g_rps g_p50 g_p99 g_cpu g_errs g_mock < <(run $GW_PORT $mode $conc $GW_PID)
      F_RPS+=("$f_rps") F_P50+=("$f_p50") F_P99+=("$f_p99") F_CPU+=("$f_cpu") F_MOCK+=("$f_mock")
      G_RPS+=("$g_rps") G_P50+=("$g_p50") G_P99+=("$g_p99") G_CPU+=("$g_cpu") G_MOCK+=("$g_mock")
      R_RPS+=("$(ratio "$g_rps" "$f_rps")") R_CPU+=("$(ratio "$g_cpu" "$f_cpu")") R_P99+=("$(ratio "$g_p99" "$f_p99")")
      ERRS=$((ERRS + ${g_errs:-0}))
    done
    f_rps=$(median "${F_RPS[@]}") f_p50=$(median "${F_P50[@]}") f_p99=$(median "${F_P99[@]}")
    f_cpu=$(median "${F_CPU[@]}") f_mock=$(median "${F_MOCK[@]}")
    g_rps=$(median "${G_RPS[@]}") g_p50=$(median "${G_P50[@]}") g_p99=$(median "${G_P99[@]}")
    g_cpu=$(median "${G_CPU[@]}") g_mock=$(median "${G_MOCK[@]}")
    # Latency each proxy adds to the mock's p50 (what a client feels at one connection).
    plus() { awk -v g="$1" -v m="$m_p50" 'BEGIN{ if (g != "n/a" && m != "n/a") printf "%.0f", g - m; else print "n/a" }'; }
    added="$(plus "$f_p50")/$(plus "$g_p50")"
    printf "%-7s %-4s | %-8s %-7s | %-9s %-7s %-8s %-6s | %-8s %-7s %-8s %-6s | %-5s %-5s %-5s %-15s %s %s\n" \
      $mode $conc "$m_rps" "$m_p50" "$f_rps" "$f_p50" "$f_p99" "$f_cpu" "$g_rps" "$g_p50" "$g_p99" "$g_cpu" \
      "$(median "${R_RPS[@]}")" "$(median "${R_CPU[@]}")" "$(median "${R_P99[@]}")" "$added" \
      "$f_mock/$g_mock" "$([ "$ERRS" != 0 ] && echo "non-2xx: $ERRS")"
  done
done

# Time to first token at c=1: what each proxy adds to the mock's own first content event.
# The three take turns of 60 requests in one run (mock, floor, InstaGen, mock, ...), so all
# see the same state of the VM, whose speed drifts between runs by more than a proxy adds.
$LOAD python3 scripts/ttft.py --targets 3000 127.0.0.1:$MOCK_PORT 127.0.0.1:$FLOOR_PORT \
  "127.0.0.1:$GW_PORT@$KEY" > "$WORK/ttft"
read -r T_MOCK T_FLOOR T_GW < <(awk '{printf "%s ", $3} END {print ""}' "$WORK/ttft")
added() { awk -v a="$1" -v m="$T_MOCK" 'BEGIN{ printf "%.0f", a - m }'; }
printf "\nTTFT p50 at c=1 (scripts/ttft.py, 3000 streamed requests to each, interleaved): mock %sµs, floor %sµs (+%sµs), InstaGen %sµs (+%sµs); added ×floor %s\n" \
  "$T_MOCK" "$T_FLOOR" "$(added "$T_FLOOR")" "$T_GW" "$(added "$T_GW")" "$(ratio "$(added "$T_GW")" "$(added "$T_FLOOR")")"

# Chat is measured again around them: by now the store holds most of the run's records,
# and the chat figure from the table above, minutes earlier, would not be the same state.
printf "\nTranslated to the chat mock (and passed through natively: -native), InstaGen only, c=64:\n"
printf "CPU µs per request and its ratio to chat's: each round runs chat, the four, chat again,\n"
printf "and takes each ratio to the mean of the two chat runs around it; the ratio shown is the\n"
printf "median over the %s round(s) (one pair drifts by ±10 %% on this kind of VM)\n" "$ROUNDS"
OTHERS="responses messages responses-native messages-native"
declare -A RATIOS=()
for round in $(seq "$ROUNDS"); do
  CHAT_AROUND="" CPUS=""
  for mode in plain $OTHERS plain; do
    read -r g_rps g_p50 g_p99 g_cpu g_errs _ < <(run $GW_PORT $mode 64 $GW_PID)
    if [ "$mode" = plain ]; then
      CHAT_AROUND="$CHAT_AROUND $g_cpu"
      label=chat
    else
      CPUS="$CPUS $mode:$g_cpu"
      label=$mode
    fi
    printf "%-3s %-16s rps %-9s p50 %-7sµs p99 %-8sµs cpu %-6sµs %s\n" "$round" $label "$g_rps" "$g_p50" "$g_p99" \
      "$g_cpu" "$([ "${g_errs:-0}" != 0 ] && echo "non-2xx: $g_errs")"
  done
  CHAT_MEAN=$(echo "$CHAT_AROUND" | awk '{ if ($1 != "n/a" && $2 != "n/a") printf "%.1f", ($1 + $2) / 2; else print "n/a" }')
  for entry in $CPUS; do
    RATIOS[${entry%%:*}]="${RATIOS[${entry%%:*}]:-} $(ratio "${entry#*:}" "$CHAT_MEAN")"
  done
done
for mode in $OTHERS; do
  # shellcheck disable=SC2086 # one word a round
  printf "%-16s ×chat %s (rounds:%s)\n" "$mode" "$(median ${RATIOS[$mode]})" "${RATIOS[$mode]}"
done
printf "\npeak RSS: InstaGen %s KiB, floor %s KiB\n" \
  "$(awk '/VmHWM/{print $2}' /proc/$GW_PID/status)" "$(awk '/VmHWM/{print $2}' /proc/$FLOOR_PID/status)"

sleep 1
STORED=$($BIN/instagen --config "$WORK/instagen.toml" usage summary --account bench --json | grep -o '"requests":[0-9]*' | head -1 | cut -d: -f2)
printf "usage records stored: %s\n" "$STORED"
