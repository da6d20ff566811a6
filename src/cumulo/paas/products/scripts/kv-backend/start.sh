reload_httpd 8080 "$DIR/www"
