set -e
install_payload
mkdir -p "$DIR/www/cgi-bin" "$PAAS_STATE"
{
    printf '#!/bin/sh\nKV_HOME=%s\n' "'$DIR'"
    cat <<'CGI'
# kv-backend's data: who answers (node, address), a request counter, and who asked.
. "$KV_HOME/node.env"
n=$(cat "$KV_STATE/requests" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > "$KV_STATE/requests"
printf 'Content-Type: application/json\r\n\r\n'
printf '{"service": "kv-backend", "node": "%s", "address": "%s", "hostname": "%s", "requests": %d, "client": "%s"}\n' \
    "$KV_NODE" "$KV_ADDRESS" "$(hostname)" "$n" "$REMOTE_ADDR"
CGI
} > "$DIR/www/cgi-bin/data"
chmod 755 "$DIR/www/cgi-bin/data"
echo '<html><body>kv-backend: see <a href="/cgi-bin/data">/cgi-bin/data</a></body></html>' > "$DIR/www/index.html"
echo "kv-backend $PAAS_VERSION installed in $DIR"
