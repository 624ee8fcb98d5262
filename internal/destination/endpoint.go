package destination

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
)

// ValidateEndpoint checks an integration's optional custom endpoint. Unless
// allowPrivate, the host must not be, or resolve to, an address inside the
// server's own network: the service calls the endpoint with stored
// credentials, so an attacker-chosen internal address would turn it into a
// proxy (cloud metadata services, admin ports).
//
// Checking at save time cannot stop DNS rebinding; clients that dial the
// endpoint should also install DialControl when private endpoints are off.
func ValidateEndpoint(ctx context.Context, endpoint string, allowPrivate bool) error {
	if endpoint == "" {
		return nil
	}
	if len(endpoint) > 2048 {
		return invalid("must be at most 2048 bytes long")
	}
	for _, r := range endpoint {
		if r <= ' ' || r == 0x7f {
			return invalid("must not contain spaces or control characters")
		}
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" {
		return invalid("must be an http:// or https:// URL, like https://minio.example.com:9000")
	}
	if u.User != nil {
		return invalid("must not contain user credentials; put them in the integration's credentials")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(endpoint, "#") {
		return invalid("must not contain a query string or fragment")
	}
	host := u.Hostname()
	if host == "" {
		return invalid("must include a host, like https://minio.example.com:9000")
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return invalid("port %q is not valid (1-65535)", port)
		}
	}

	addr, err := netip.ParseAddr(host)
	isIP := err == nil
	if !isIP && !validHostname(host) {
		return invalid("host %q is not a valid DNS name or IP address", host)
	}
	if allowPrivate {
		return nil
	}
	if isIP {
		if kind := restrictedKind(addr); kind != "" {
			return invalid("host %s is a %s address; private endpoints are not allowed on this server", host, kind)
		}
		return nil
	}
	// RFC 6761 reserves these for loopback; decide without asking a resolver
	// that might be configured to answer otherwise.
	lower := strings.ToLower(strings.TrimSuffix(host, "."))
	if lower == "localhost" || strings.HasSuffix(lower, ".localhost") {
		return invalid("host %q is a loopback address; private endpoints are not allowed on this server", host)
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		// Refuse rather than guess: an unverifiable host may be internal.
		return invalid("host %q could not be resolved", host)
	}
	for _, a := range addrs {
		if kind := restrictedKind(a); kind != "" {
			return invalid("host %q resolves to %s, a %s address; private endpoints are not allowed on this server", host, a.WithZone(""), kind)
		}
	}
	return nil
}

// validHostname accepts DNS names only. A name whose last label is numeric
// is refused because resolvers may read it as an IP in a legacy form
// (2130706433, 0x7f.1, 127.1), which would dodge the literal-IP check.
func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	last := strings.ToLower(labels[len(labels)-1])
	if allBytes(last, func(c byte) bool { return c >= '0' && c <= '9' }) || strings.HasPrefix(last, "0x") {
		return false
	}
	return true
}

var (
	sharedRange = netip.MustParsePrefix("100.64.0.0/10") // carrier-grade NAT; some clouds' metadata lives here
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")
	nat64       = netip.MustParsePrefix("64:ff9b::/96")
)

// restrictedKind names why a is inside the server's own network, or
// returns "" for a public address.
func restrictedKind(a netip.Addr) string {
	a = a.WithZone("").Unmap()
	if nat64.Contains(a) {
		// The gateway forwards to the embedded IPv4 address.
		b := a.As16()
		a = netip.AddrFrom4([4]byte(b[12:]))
	}
	switch {
	case a.IsLoopback():
		return "loopback"
	case a.IsPrivate():
		return "private"
	case a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "multicast"
	case a.IsLinkLocalUnicast():
		return "link-local"
	case a.IsUnspecified() || thisNetwork.Contains(a):
		return "unspecified"
	case sharedRange.Contains(a):
		return "shared (carrier-grade NAT)"
	}
	return ""
}

// IsRestricted reports whether a is an address that ValidateEndpoint refuses
// when private endpoints are not allowed.
func IsRestricted(a netip.Addr) bool { return restrictedKind(a) != "" }

// DialControl is a net.Dialer Control function that refuses connections to
// restricted addresses, closing the DNS-rebinding gap left by validating the
// endpoint only when it is saved.
func DialControl(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("destination: dial %q: %w", address, err)
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("destination: dial %q: not an IP address", address)
	}
	if kind := restrictedKind(a); kind != "" {
		return invalid("endpoint address %s is a %s address; private endpoints are not allowed on this server", a.WithZone(""), kind)
	}
	return nil
}
