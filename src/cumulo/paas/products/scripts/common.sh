# Helpers every built-in recipe starts with (Cumulo PaaS). The daemon's pid is kept in
# "$DIR/httpd.pid"; a pid counts only while /proc says it is a busybox httpd (a template node
# carries the pid file of the node it was cloned from, whose processes are not there).
DIR="$PAAS_ROOT/$PAAS_PRODUCT"
httpd_pid() {
    p=$(cat "$DIR/httpd.pid" 2>/dev/null) || return 1
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 1
    case "$(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null)" in
        "busybox httpd "*) echo "$p" ;;
        *) return 1 ;;
    esac
}
stop_httpd() {
    p=$(httpd_pid) || return 0
    kill "$p" 2>/dev/null
    i=0
    while kill -0 "$p" 2>/dev/null && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$p" 2>/dev/null
    rm -f "$DIR/httpd.pid"
    return 0
}
# start_httpd PORT DOCROOT: a busybox httpd in the foreground of a background job, stdio closed
# (else the exec would wait for its pipes), then wait until it listens.
start_httpd() {
    stop_httpd
    busybox httpd -f -p "$1" -h "$2" -c "$DIR/httpd.conf" </dev/null >>"$DIR/httpd.log" 2>&1 &
    pid=$!
    echo "$pid" > "$DIR/httpd.pid"
    i=0
    until busybox netstat -ltn 2>/dev/null | grep -q ":$1 "; do
        if [ "$i" -ge 100 ] || ! kill -0 "$pid" 2>/dev/null; then
            echo "busybox httpd did not start listening on port $1:" >&2
            tail -n 20 "$DIR/httpd.log" >&2
            return 1
        fi
        sleep 0.1
        i=$((i + 1))
    done
    echo "busybox httpd listens on port $1 (pid $(cat "$DIR/httpd.pid"))"
}
# reload_httpd PORT DOCROOT: re-read httpd.conf (SIGHUP) when it runs, else start it. The start
# recipes are this: start-or-reload, so a reconfigure (configure + start) needs no restart.
reload_httpd() {
    if p=$(httpd_pid); then
        kill -HUP "$p" && echo "busybox httpd (pid $p) re-reads its configuration"
    else
        start_httpd "$1" "$2"
    fi
}
# addresses LIST: the comma list's entries that look like addresses, one a line.
addresses() {
    echo "$1" | tr ', ' '\n\n' | while read -r a; do
        case "$a" in
            '') ;;
            *[!0-9A-Fa-f.:]*) echo "paas: ignoring $a: not an address" >&2 ;;
            *) echo "$a" ;;
        esac
    done
}
# install_payload: the package the install step unpacked in $PAAS_PAYLOAD (built-in products),
# checked against its SHA256SUMS, then moved to "$DIR/assets".
install_payload() {
    [ -n "${PAAS_PAYLOAD:-}" ] || return 0
    (cd "$PAAS_PAYLOAD" && busybox sha256sum -c -s SHA256SUMS) || { echo "the package's checksums do not match" >&2; return 1; }
    mkdir -p "$DIR"
    rm -rf "$DIR/assets"
    mv "$PAAS_PAYLOAD/assets" "$DIR/assets"
    rm -rf "$PAAS_PAYLOAD"
    echo "package of $PAAS_PRODUCT $PAAS_VERSION: $(ls "$DIR/assets" | wc -l) assets checked and installed"
}
