{% autoescape off %}#!/bin/sh
# Installs the compute marketplace's host agent on this server:
#   curl -fsSL {{ platform }}/agent/install.sh | sudo sh -s -- --token TOKEN
# Fetches agent.pyz, checks its SHA-256, registers the host with the one-time TOKEN from the host's
# page, runs the self-test and, where systemd runs, installs the service marketplace-agent.
# Options: --runtime docker|process (default docker), --prefix DIR (default /opt/marketplace-agent),
# --state-dir DIR (default PREFIX/state), --no-service.
set -eu
PLATFORM="{{ platform }}"
SHA256="{{ sha256 }}"
TOKEN=""
PREFIX="/opt/marketplace-agent"
STATE_DIR=""
RUNTIME="docker"
SERVICE=1
while [ $# -gt 0 ]; do
  case "$1" in
    --token) TOKEN="$2"; shift 2 ;;
    --prefix) PREFIX="$2"; shift 2 ;;
    --state-dir) STATE_DIR="$2"; shift 2 ;;
    --runtime) RUNTIME="$2"; shift 2 ;;
    --no-service) SERVICE=0; shift ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
[ -n "$TOKEN" ] || { echo "give --token TOKEN (the host's page on $PLATFORM issues one)" >&2; exit 2; }
command -v python3 >/dev/null 2>&1 || { echo "python3 (3.11 or newer) is needed" >&2; exit 1; }
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "python3 3.11 or newer is needed" >&2; exit 1; }
STATE_DIR="${STATE_DIR:-$PREFIX/state}"
mkdir -p "$PREFIX" "$STATE_DIR"
chmod 700 "$STATE_DIR"
TMP="$(mktemp)"
trap 'rm -f "$TMP"' EXIT
if command -v curl >/dev/null 2>&1; then
  curl -fsSL "$PLATFORM/agent/agent.pyz" -o "$TMP"
else
  wget -qO "$TMP" "$PLATFORM/agent/agent.pyz"
fi
GOT="$(python3 -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$TMP")"
[ "$GOT" = "$SHA256" ] || { echo "agent.pyz does not match its published SHA-256; nothing installed" >&2; exit 1; }
cp "$TMP" "$PREFIX/agent.pyz"
chmod 755 "$PREFIX/agent.pyz"
AGENT="python3 $PREFIX/agent.pyz --state-dir $STATE_DIR"
$AGENT register --platform "$PLATFORM" --token "$TOKEN"
$AGENT selftest || echo "The self-test reported problems (above); the host stays unverified until they are fixed." >&2
if [ "$SERVICE" = 1 ] && command -v systemctl >/dev/null 2>&1 && [ -d /etc/systemd/system ]; then
  cat > /etc/systemd/system/marketplace-agent.service <<UNIT
[Unit]
Description=Compute marketplace host agent
After=network-online.target docker.service
Wants=network-online.target

[Service]
ExecStart=$(command -v python3) $PREFIX/agent.pyz --state-dir $STATE_DIR run --runtime $RUNTIME
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
UNIT
  systemctl daemon-reload
  systemctl enable --now marketplace-agent
  echo "The agent is installed and running: systemctl status marketplace-agent"
else
  echo "The agent is installed. Run it with: $AGENT run --runtime $RUNTIME"
fi
{% endautoescape %}
