stop_httpd
rm -rf "$DIR"
echo "kv-backend removed"
