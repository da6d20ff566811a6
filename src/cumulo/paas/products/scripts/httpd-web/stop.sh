stop_httpd
echo "httpd-web stopped"
