set -e
install_payload
mkdir -p "$DIR/www/cgi-bin"
if [ ! -f "$DIR/www/index.html" ]; then
    echo "<html><body>httpd-web $PAAS_VERSION on $PAAS_NODE: no application deployed yet</body></html>" > "$DIR/www/index.html"
fi
echo "httpd-web $PAAS_VERSION installed in $DIR"
