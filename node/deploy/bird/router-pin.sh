#!/bin/sh
# Run on the router in front of the nodes, next to BIRD (router.conf): keep every connection to
# the anycast address on the node it started on, even after that node withdraws its route.
#
#   router-pin.sh ANYCAST IFACE:GATEWAY [IFACE:GATEWAY...]    e.g. router-pin.sh 192.0.2.1 eth1:10.10.1.2 eth2:10.10.2.2
#
# ECMP is stateless: when a draining node withdraws its route, packets of its connections in
# progress would hash to another node, which answers with a reset. Here conntrack remembers
# which link each connection left on (the ct mark), and a policy route per link sends the rest
# of the connection the same way. New connections follow the ECMP route, so they go only to
# nodes that still announce it. Needs nftables and iproute2.
set -eu
anycast="$1"; shift
table=100
marks=""
for link in "$@"; do
  table=$((table + 1)); mark=$((table - 100))
  dev="${link%%:*}"; gateway="${link#*:}"
  ip rule del fwmark "$mark" 2>/dev/null || true
  ip rule add fwmark "$mark" table "$table"
  ip route replace "$anycast/32" via "$gateway" dev "$dev" table "$table"
  marks="$marks        oifname \"$dev\" ct state new ct mark set $mark
"
done
nft -f - <<NFT
table ip outpost_pin
delete table ip outpost_pin
table ip outpost_pin {
    chain prerouting {
        type filter hook prerouting priority mangle; policy accept;
        ip daddr $anycast ct mark != 0 meta mark set ct mark
    }
    chain postrouting {
        type filter hook postrouting priority mangle; policy accept;
        ip daddr $anycast jump remember
    }
    chain remember {
$marks    }
}
NFT
