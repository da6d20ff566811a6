stop_httpd
echo "kv-backend stopped"
