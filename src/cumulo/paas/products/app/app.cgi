#!/bin/sh
# The demo application's page: fetches /cgi-bin/data from every backend over the tenant network.
# The backends' addresses: httpd-web's configure writes them to <product dir>/backends (this
# script runs in <product dir>/www/cgi-bin).
list=../../backends
[ -f "$list" ] || list="${PAAS_ROOT:-/opt/paas}/httpd-web/backends"
esc() { sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g'; }
printf 'Content-Type: text/html\r\n\r\n'
echo '<!DOCTYPE html><html><head><title>Cumulo PaaS demo application</title></head><body>'
echo "<h1>Cumulo PaaS demo application</h1><p>web node: $(hostname)</p><ul>"
n=0
for ip in $(cat "$list" 2>/dev/null); do
    n=$((n + 1))
    # (busybox 1.35 wget -T segfaults: busybox timeout bounds it instead)
    if data=$(busybox timeout 5 busybox wget -q -O - "http://$ip:8080/cgi-bin/data" 2>&1); then state=ok; else state=error; fi
    printf '<li class="backend %s" data-backend="%s">%s: <code>%s</code></li>\n' \
        "$state" "$ip" "$ip" "$(echo "$data" | esc)"
done
[ "$n" -gt 0 ] || echo '<li class="none">no backend configured</li>'
echo '</ul></body></html>'
