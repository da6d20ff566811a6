stop_httpd
rm -rf "$DIR"
echo "httpd-web removed"
