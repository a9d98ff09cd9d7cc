#!/usr/bin/env bash
# Install an Outpost edge node on a Debian-like system with systemd (x86_64 VMs, aarch64
# boards such as the Raspberry Pi 4/5):
#
#   sudo node/deploy/install.sh --binary PATH/TO/outpost [--config node.toml]
#
# It installs the binary to /usr/local/bin, creates the `outpost` user, /etc/outpost and
# /var/lib/outpost, installs a node.toml (the one given, or a commented starting point sized
# for a 1 GiB board if none exists yet) and the outpost-node@ unit, then checks the config
# (`outpost check`). A config that passes is served: outpost-node@a starts, and
# `systemctl start` returns once the node serves (the unit is Type=notify). One that does not
# (the starting point names certificates to put in place first) leaves the unit installed
# and stopped, with the error and the next step printed. Run it again with a new binary to
# upgrade without downtime: the other instance (@a or @b) takes over.
#
#   --root DIR     install under DIR instead of / (for packaging and tests)
#   --user NAME    run the node as NAME (default outpost, created if missing)
#   SYSTEMCTL=...  the systemctl to call (default systemctl)
set -euo pipefail

binary=""
config=""
root=""
user="outpost"
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --config) config="$2"; shift 2 ;;
    --root) root="${2%/}"; shift 2 ;;
    --user) user="$2"; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
systemctl=${SYSTEMCTL:-systemctl}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[ -n "$root" ] || [ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root (sudo)" >&2; exit 1; }
[ -n "$binary" ] || { echo "install.sh: --binary PATH is required (the outpost binary for this machine)" >&2; exit 2; }
[ -x "$binary" ] || { echo "install.sh: $binary is not an executable file" >&2; exit 1; }
if ! "$binary" --version >/dev/null 2>&1; then
  echo "install.sh: $binary does not run here (built for another architecture? this is $(uname -m))" >&2
  exit 1
fi
[ -z "$config" ] || [ -f "$config" ] || { echo "install.sh: $config is not a file" >&2; exit 1; }

bin="$root/usr/local/bin/outpost"
etc="$root/etc/outpost"
data="$root/var/lib/outpost"
units="$root/etc/systemd/system"
id "$user" >/dev/null 2>&1 || useradd --system --home-dir /var/lib/outpost --shell /usr/sbin/nologin "$user"
install -d -m 755 "$root/usr/local/bin" "$etc" "$units"
install -d -o "$user" -g "$(id -gn "$user")" -m 750 "$data"
install -m 755 "$binary" "$bin.new"
mv -f "$bin.new" "$bin"

if [ -n "$config" ]; then
  install -m 644 "$config" "$etc/node.toml"
elif [ ! -e "$etc/node.toml" ]; then
  cat > "$etc/node.toml" <<'TOML'
# Outpost node: see docs/operators.md in the Outpost repository. Put the certificates in place
# (or change the paths), name the apps or the fleet's origin, then:
#   outpost check /etc/outpost/node.toml && systemctl enable --now outpost-node@a
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
  echo "install.sh: wrote a starting point, /etc/outpost/node.toml"
fi

install -m 644 "$here/outpost-node@.service" "$units/outpost-node@.service"
"$systemctl" daemon-reload

# A config that does not load would only crash-loop the unit: leave it stopped, say why.
if ! problem=$("$bin" check --as node "$etc/node.toml" 2>&1); then
  echo "install.sh: installed $("$bin" --version), not started: the config does not load yet:"
  echo "  $problem"
  echo "next: edit /etc/outpost/node.toml, check it with \`outpost check /etc/outpost/node.toml\`,"
  echo "      then \`systemctl enable --now outpost-node@a\`"
  [ -z "$config" ] || exit 1
  exit 0
fi

# Take turns: start the instance that is not running; it takes the sockets over, and
# `systemctl start` returns once it serves.
if "$systemctl" is-active --quiet outpost-node@a; then next=b; other=a; else next=a; other=b; fi
if ! "$systemctl" enable --now "outpost-node@$next"; then
  echo "install.sh: outpost-node@$next did not start; see \`journalctl -u outpost-node@$next\`" >&2
  exit 1
fi
"$systemctl" disable "outpost-node@$other" >/dev/null 2>&1 || true
echo "install.sh: outpost-node@$next is serving ($("$bin" --version))"
echo "  logs:    journalctl -u outpost-node@$next -f"
echo "  health:  curl -s http://127.0.0.1:9901/readyz"
