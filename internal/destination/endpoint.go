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
	return validateURL(ctx, endpoint, allowPrivate, true)
}

// validateURL checks an http(s) URL the server will call; an endpoint is a
// base URL (no query, fragment), other URLs (token_uri) may have a query.
func validateURL(ctx context.Context, endpoint string, allowPrivate, base bool) error {
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
	if base && (u.RawQuery != "" || u.ForceQuery) || u.Fragment != "" || strings.Contains(endpoint, "#") {
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

// ValidateTokenURI checks the token_uri of a GCS service account key: the
// server POSTs a signed assertion there to get its access token, so it is
// held to the endpoint rules, and must be https unless private endpoints
// are allowed (emulators). Empty means Google's default.
func ValidateTokenURI(ctx context.Context, uri string, allowPrivate bool) error {
	if uri == "" {
		return nil
	}
	if !allowPrivate && !strings.HasPrefix(strings.ToLower(uri), "https://") {
		return invalid("token_uri must be an https:// URL, like https://oauth2.googleapis.com/token")
	}
	if err := validateURL(ctx, uri, allowPrivate, false); err != nil {
		return invalid("token_uri %s", err)
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

// special4 are the IPv4 ranges of the IANA special-purpose registry (and
// multicast/reserved space) that are not the loopback, private, link-local
// or unspecified ranges netip already names. A few of them are "globally
// reachable" in the registry (AS112, AMT), but no storage provider lives
// there, and an allowlist of ordinary unicast is easier to reason about.
var special4 = []struct {
	p    netip.Prefix
	kind string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared (carrier-grade NAT)"}, // some clouds' metadata lives here
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignment"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation"},
	{netip.MustParsePrefix("192.31.196.0/24"), "AS112"},
	{netip.MustParsePrefix("192.52.193.0/24"), "AMT"},
	{netip.MustParsePrefix("192.88.99.0/24"), "6to4 relay anycast"},
	{netip.MustParsePrefix("192.175.48.0/24"), "AS112"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"}, // includes 255.255.255.255
}

// IPv6: only global unicast (2000::/3) and the NAT64 well-known prefix can
// reach a public host; inside 2000::/3 these are special.
var (
	globalUnicast6 = netip.MustParsePrefix("2000::/3")
	nat64          = netip.MustParsePrefix("64:ff9b::/96") // gateway forwards to the embedded IPv4
	sixToFour      = netip.MustParsePrefix("2002::/16")    // relays forward to the embedded IPv4
	special6       = []struct {
		p    netip.Prefix
		kind string
	}{
		{netip.MustParsePrefix("2001::/23"), "IETF protocol assignment (Teredo, ORCHID, benchmarking)"},
		{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
		{netip.MustParsePrefix("2620:4f:8000::/48"), "AS112"},
		{netip.MustParsePrefix("3fff::/20"), "documentation"},
	}
	named6 = []struct {
		p    netip.Prefix
		kind string
	}{
		{netip.MustParsePrefix("::/96"), "IPv4-compatible"},
		{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64"},
		{netip.MustParsePrefix("100::/64"), "discard-only"},
		{netip.MustParsePrefix("fc00::/7"), "private"},
		{netip.MustParsePrefix("fec0::/10"), "site-local"},
	}
)

// restrictedKind names why a is inside the server's own network or in a
// special-purpose range, or returns "" for an ordinary public address.
func restrictedKind(a netip.Addr) string {
	a = a.WithZone("").Unmap()
	if a.Is6() {
		switch {
		case nat64.Contains(a):
			b := a.As16()
			return restrictedKind(netip.AddrFrom4([4]byte(b[12:])))
		case sixToFour.Contains(a):
			b := a.As16()
			return restrictedKind(netip.AddrFrom4([4]byte(b[2:6])))
		}
	}
	switch {
	case a.IsLoopback():
		return "loopback"
	case a.IsUnspecified():
		return "unspecified"
	case a.IsPrivate():
		return "private"
	case a.IsMulticast():
		return "multicast"
	case a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast():
		return "link-local"
	}
	if a.Is4() {
		for _, r := range special4 {
			if r.p.Contains(a) {
				return r.kind
			}
		}
		return ""
	}
	for _, r := range named6 {
		if r.p.Contains(a) {
			return r.kind
		}
	}
	if !globalUnicast6.Contains(a) {
		return "reserved"
	}
	for _, r := range special6 {
		if r.p.Contains(a) {
			return r.kind
		}
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
