set -e
mkdir -p "$DIR"
# The application's CGIs read the backends from here on each request: a reconfigure needs no restart.
addresses "$BACKENDS" > "$DIR/backends.new"
mv -f "$DIR/backends.new" "$DIR/backends"
: > "$DIR/httpd.conf"
echo "httpd-web backends: ${BACKENDS:-none}"
