set -e
mkdir -p "$DIR" "$PAAS_STATE"
printf "KV_NODE='%s'\nKV_ADDRESS='%s'\nKV_STATE='%s'\n" "$PAAS_NODE" "$PAAS_IP" "$PAAS_STATE" > "$DIR/node.env"
# busybox httpd's rules: allow each member of ALLOW_FROM, deny the rest (403).
{ addresses "$ALLOW_FROM" | sed 's/^/A:/'; echo 'D:*'; } > "$DIR/httpd.conf.new"
mv -f "$DIR/httpd.conf.new" "$DIR/httpd.conf"
echo "kv-backend allows: ${ALLOW_FROM:-nobody}"
