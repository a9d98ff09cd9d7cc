#!/usr/bin/env bash
# Install an Outpost edge node on a Debian-like system with systemd (x86_64 VMs, aarch64
# boards such as the Raspberry Pi 4/5):
#
#   sudo node/deploy/install.sh --binary PATH/TO/outpost [--config node.toml]
#
# It installs the binary to /usr/local/bin, creates the `outpost` user, /etc/outpost and
# /var/lib/outpost, installs a node.toml (the one given, or a commented starting point sized for
# a 1 GiB board if none exists yet), and enables and starts outpost-node@a. Run it again with a
# new binary to upgrade without downtime: the other instance (@a or @b) takes over.
set -euo pipefail

binary=""
config=""
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --config) config="$2"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root (sudo)" >&2; exit 1; }
[ -n "$binary" ] || { echo "install.sh: --binary PATH is required (the outpost binary for this machine)" >&2; exit 2; }
[ -x "$binary" ] || { echo "install.sh: $binary is not an executable file" >&2; exit 1; }
if ! "$binary" --version >/dev/null 2>&1; then
  echo "install.sh: $binary does not run here (built for another architecture? this is $(uname -m))" >&2
  exit 1
fi

id outpost >/dev/null 2>&1 || useradd --system --home-dir /var/lib/outpost --shell /usr/sbin/nologin outpost
install -d -m 755 /etc/outpost
install -d -o outpost -g outpost -m 750 /var/lib/outpost
install -m 755 "$binary" /usr/local/bin/outpost.new
mv -f /usr/local/bin/outpost.new /usr/local/bin/outpost

if [ -n "$config" ]; then
  install -m 644 "$config" /etc/outpost/node.toml
elif [ ! -e /etc/outpost/node.toml ]; then
  cat > /etc/outpost/node.toml <<'TOML'
# Outpost node: see the README's "Operating a fleet" section. Edit, then:
#   systemctl restart outpost-node@a
name = "edge-1"
data_dir = "/var/lib/outpost"
apps = []

[listen]
https = "0.0.0.0:443"
http = "0.0.0.0:80"          # redirects to HTTPS

[admin]
listen = "127.0.0.1:9901"    # /metrics, /healthz, /readyz

[[tls.certs]]
hosts = ["example.com", "*.example.com"]
cert = "/etc/outpost/tls/example.com.pem"
key = "/etc/outpost/tls/example.com-key.pem"

# A 1 GiB board: 64 instances of up to 128 MiB each (their memory is only reserved address
# space until a request touches it), and a short queue in front.
[pool]
instances = 64
memory_mb = 128            # the most one instance may use (apps default to 128)
max_queued = 256

[health]
drain_delay_ms = 2000
# on_ready = "/etc/outpost/announce.sh"
# on_drain = "/etc/outpost/announce.sh"
TOML
  echo "install.sh: wrote a starting /etc/outpost/node.toml; edit it (certificates, apps, [cluster])"
fi

install -m 644 "$here/outpost-node@.service" /etc/systemd/system/outpost-node@.service
systemctl daemon-reload
# Take turns: start the instance that is not running; it takes the sockets over.
if systemctl is-active --quiet outpost-node@a; then next=b; other=a; else next=a; other=b; fi
systemctl enable --now "outpost-node@$next"
systemctl disable "outpost-node@$other" >/dev/null 2>&1 || true
echo "install.sh: outpost-node@$next is running ($(/usr/local/bin/outpost --version))"
echo "  logs:    journalctl -u outpost-node@$next -f"
echo "  health:  curl -s http://127.0.0.1:9901/readyz"
