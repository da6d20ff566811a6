# After an application lands in $PAAS_ARTIFACT_DIR: its CGIs executable, the server re-reading.
chmod 755 "$PAAS_ARTIFACT_DIR"/cgi-bin/* 2>/dev/null || true
reload_httpd 80 "$DIR/www"
