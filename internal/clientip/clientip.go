// Package clientip decides which address a request came from: the socket
// peer, or — only when that peer is a reverse proxy the operator trusts —
// the address the proxies recorded in X-Forwarded-For.
package clientip

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Trusted is the set of proxies whose X-Forwarded-For is believed.
type Trusted []netip.Prefix

// Parse reads CIDRs or bare IPs (--trusted-proxies).
func Parse(list []string) (Trusted, error) {
	var t Trusted
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			t = append(t, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR nor an IP address", s)
		}
		a = a.Unmap()
		t = append(t, netip.PrefixFrom(a, a.BitLen()))
	}
	return t, nil
}

// Contains reports whether ip is a trusted proxy.
func (t Trusted) Contains(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	for _, p := range t {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Resolve returns the client address of a request whose socket peer is
// peer (host or host:port) and which carried the X-Forwarded-For values
// xff. Hops are read from the right (the entry our nearest proxy appended)
// and trusted proxies skipped; the first untrusted address is the client.
// A peer that is not trusted is the client, whatever the header says, so
// nobody can choose the address recorded for them.
func (t Trusted) Resolve(peer string, xff []string) string {
	client, ok := parse(peer)
	if !ok {
		return peer
	}
	if !t.Contains(client) {
		return client.String()
	}
	var hops []string
	for _, v := range xff {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		hop, ok := parse(hops[i])
		if !ok {
			// Garbage from a hop: believe nothing further left.
			break
		}
		client = hop
		if !t.Contains(hop) {
			break
		}
	}
	return client.String()
}

// parse reads "ip", "ip:port" or "[ipv6]:port".
func parse(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}
