#!/usr/bin/env bash
# Tries deploy/nginx.conf and deploy/Caddyfile for real on this machine: installs nginx and Caddy (Debian), makes
# a self-signed certificate for localhost and trusts it, runs the server on 127.0.0.1:5090 behind nginx
# (https://localhost:8443) and Caddy (https://localhost:8444), and through each one signs up, logs in, sends over
# the WebSocket and reads the history back with the `switchboard` command. Also checks the systemd unit.
# Needs root. Leaves nothing running.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/switchboard-proxies.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; nginx -s stop -c "$work/nginx-main.conf" 2>/dev/null || true; }
trap cleanup EXIT

if ! command -v nginx >/dev/null || ! command -v caddy >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends nginx caddy >/dev/null
fi

# A certificate for localhost, trusted by this machine (and so by .NET).
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cp "$work/cert.pem" /usr/local/share/ca-certificates/switchboard-try-proxies.crt
update-ca-certificates >/dev/null 2>&1

dotnet build src/Switchboard.Server -c Release -v quiet --nologo >/dev/null
dotnet build src/Switchboard.Cli -c Release -v quiet --nologo >/dev/null
dotnet artifacts/bin/Switchboard.Server/release/Switchboard.Server.dll --urls http://127.0.0.1:5090 \
  --Switchboard:DataDir "$work/data" --Switchboard:TrustedProxies:0 127.0.0.1 > "$work/server.log" 2>&1 &
pids+=($!)

# The shipped configs, pointed at this machine's ports and certificate.
sed -e 's/server 127.0.0.1:5080;/server 127.0.0.1:5090;/' -e 's/listen 443 ssl http2;/listen 127.0.0.1:8443 ssl http2;/' \
    -e 's/server_name chat.example.com;/server_name localhost;/' \
    -e "s#/etc/ssl/switchboard/fullchain.pem#$work/cert.pem#" -e "s#/etc/ssl/switchboard/privkey.pem#$work/key.pem#" \
    deploy/nginx.conf > "$work/switchboard-nginx.conf"
cat > "$work/nginx-main.conf" <<CONF
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events {}
http {
  access_log $work/nginx-access.log;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work; uwsgi_temp_path $work; scgi_temp_path $work;
  include $work/switchboard-nginx.conf;
}
CONF
nginx -c "$work/nginx-main.conf"
sed -e 's/^chat.example.com {/localhost:8444 {/' -e 's/reverse_proxy 127.0.0.1:5080/reverse_proxy 127.0.0.1:5090/' \
    -e "s#^\t@operator#\ttls $work/cert.pem $work/key.pem\n\t@operator#" deploy/Caddyfile > "$work/Caddyfile"
HOME=$work XDG_DATA_HOME=$work XDG_CONFIG_HOME=$work caddy run --config "$work/Caddyfile" --adapter caddyfile > "$work/caddy.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -sf https://localhost:8443/healthz >/dev/null && curl -sf https://localhost:8444/healthz >/dev/null && break; sleep 0.2; done

sb() { dotnet artifacts/bin/Switchboard.Cli/release/switchboard.dll "$@"; }
for port in 8443 8444; do
  url=https://localhost:$port
  a=try$RANDOM$port; b=try$RANDOM$port
  sb register "$a" --password 'correct horse' --url "$url" >/dev/null
  sb register "$b" --password 'battery staple' --url "$url" >/dev/null
  sb login "$a" --password 'correct horse' --url "$url" --config "$work/$a.json" >/dev/null
  sb send "$b" "through $port" --config "$work/$a.json" >/dev/null
  sb login "$b" --password 'battery staple' --url "$url" --config "$work/$b.json" >/dev/null
  sb history "$a" --config "$work/$b.json" | grep -q "through $port"
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/metrics")" = 403 ]
  echo "ok: $url (sign-up, login, a send over the WebSocket, history; /metrics refused)"
done

systemd-analyze verify deploy/switchboard.service 2>&1 | grep -v -e "not executable" -e "Failed to resolve" -e "is not a valid" -e "^$" || true
echo "ok: systemd-analyze verify deploy/switchboard.service"
rm -f /usr/local/share/ca-certificates/switchboard-try-proxies.crt && update-ca-certificates --fresh >/dev/null 2>&1
