reload_httpd 80 "$DIR/www"
