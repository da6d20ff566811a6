#!/bin/sh
# Burn one CPU for s seconds (?s=N, default 60, at most 3600), in the background with stdio
# closed, and answer at once (the autoscaling demo's load).
s=${QUERY_STRING#*s=}
s=${s%%&*}
case "$s" in ''|*[!0-9]*) s=60 ;; esac
[ "$s" -le 3600 ] || s=3600
busybox timeout "$s" sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 &
printf 'Content-Type: application/json\r\n\r\n'
printf '{"burning": %d, "node": "%s"}\n' "$s" "$(hostname)"
