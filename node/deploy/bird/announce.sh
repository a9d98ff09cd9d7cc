#!/bin/sh
# The [health] hook that announces or withdraws this node's anycast route through BIRD:
#
#   [health]
#   on_ready = "/etc/outpost/announce.sh"
#   on_drain = "/etc/outpost/announce.sh"
#   drain_delay_ms = 2000        # time for routers to move traffic away before listeners close
#
# Outpost runs it with OUTPOST_STATE=ready (announce) or draining / not-ready (withdraw). The
# route itself is the `anycast` static protocol of node.conf, created disabled: enabling it
# exports the route over BGP, disabling it withdraws it.
set -eu
socket="${BIRD_SOCKET:-/run/bird/bird.ctl}"
case "${OUTPOST_STATE:-}" in
  ready) exec birdc -s "$socket" enable anycast ;;
  *)     exec birdc -s "$socket" disable anycast ;;
esac
