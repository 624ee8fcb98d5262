package destination

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// Only IP literals, "localhost" and names refused before any lookup are used
// here, so the tests never depend on network DNS.
func TestValidateEndpoint(t *testing.T) {
	tests := []struct {
		endpoint     string
		allowPrivate bool
		wantErr      string
	}{
		{"", false, ""},
		{"https://52.216.1.1", false, ""},
		{"https://52.216.1.1:443/", false, ""},
		{"http://[2600:1f18::1]:9000", false, ""},
		{"http://127.0.0.1:9000", true, ""},
		{"http://localhost:9000", true, ""},
		{"http://10.0.0.1", true, ""},

		{"http://127.0.0.1:9000", false, "loopback"},
		{"http://localhost:9000", false, "loopback"},
		{"http://minio.localhost:9000", false, "loopback"},
		{"http://LOCALHOST.:9000", false, "loopback"},
		{"http://[::1]:10000", false, "loopback"},
		{"http://[::ffff:127.0.0.1]:9000", false, "loopback"},
		{"http://10.0.0.1", false, "private"},
		{"http://172.16.5.4", false, "private"},
		{"http://192.168.1.10:9000", false, "private"},
		{"http://[fd00:ec2::254]", false, "private"},
		{"http://169.254.169.254", false, "link-local"},
		{"http://[fe80::1%25eth0]:9000", false, "link-local"},
		{"http://0.0.0.0:9000", false, "unspecified"},
		{"http://0.1.2.3", false, "unspecified"},
		{"http://[::]", false, "unspecified"},
		{"http://224.0.0.1", false, "multicast"},
		{"http://100.100.100.200", false, "shared"},
		{"http://[64:ff9b::a9fe:a9fe]", false, "link-local"},
		// Legacy numeric forms that some resolvers map to 127.0.0.1.
		{"http://2130706433", false, "not a valid DNS name"},
		{"http://0x7f.1", false, "not a valid DNS name"},
		{"http://127.1", false, "not a valid DNS name"},
		{"http://127.1", true, "not a valid DNS name"},

		{"ftp://52.216.1.1", false, "http:// or https://"},
		{"52.216.1.1:9000", false, "http:// or https://"},
		{"s3.amazonaws.com", false, "http:// or https://"},
		{"http:opaque", false, "http:// or https://"},
		{"http://", false, "must include a host"},
		{"http:///path", false, "must include a host"},
		{"https://user:pass@52.216.1.1", false, "user credentials"},
		{"https://52.216.1.1/?x=1", false, "query string"},
		{"https://52.216.1.1/?", false, "query string"},
		{"https://52.216.1.1/#f", false, "query string or fragment"},
		{"https://52.216.1.1:0", false, "port"},
		{"https://52.216.1.1:70000", false, "port"},
		{"https://bad!host.com", false, "not a valid DNS name"},
		{"https://exa mple.com", false, "spaces"},
		{"https://-bad.example.com", false, "not a valid DNS name"},
	}
	for _, tc := range tests {
		err := ValidateEndpoint(context.Background(), tc.endpoint, tc.allowPrivate)
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("ValidateEndpoint(%q, %v): %v", tc.endpoint, tc.allowPrivate, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateEndpoint(%q, %v) = %v, want error containing %q", tc.endpoint, tc.allowPrivate, err, tc.wantErr)
		}
	}
}

func TestDialControl(t *testing.T) {
	tests := map[string]bool{ // address -> allowed
		"52.216.1.1:443":       true,
		"[2600:1f18::1]:443":   true,
		"127.0.0.1:9000":       false,
		"169.254.169.254:80":   false,
		"[::ffff:10.0.0.1]:80": false,
		"[fe80::1%eth0]:80":    false,
		"not-an-ip:80":         false,
	}
	for addr, ok := range tests {
		err := DialControl("tcp", addr, nil)
		if (err == nil) != ok {
			t.Errorf("DialControl(%q) = %v, want allowed=%v", addr, err, ok)
		}
	}
	if !IsRestricted(netip.MustParseAddr("192.168.0.1")) || IsRestricted(netip.MustParseAddr("8.8.8.8")) {
		t.Error("IsRestricted disagrees with restrictedKind")
	}
}

// TestRestrictedKindSpecialPurpose: every range of the IANA IPv4 and IPv6
// special-purpose registries (and reserved space) is refused, at save time
// (ValidateEndpoint) and at dial time (DialControl); ordinary unicast is not.
func TestRestrictedKindSpecialPurpose(t *testing.T) {
	tests := []struct {
		addr string
		kind string // "" = allowed
	}{
		{"8.8.8.8", ""},
		{"52.216.1.1", ""},
		{"198.17.255.255", ""},
		{"198.20.0.0", ""},
		{"2600:1f18::1", ""},
		{"2a00:1450:4001::1", ""},
		{"64:ff9b::808:808", ""},   // NAT64 of 8.8.8.8
		{"2002:808:808::1", ""},    // 6to4 of 8.8.8.8
		{"2001:200::1", ""},        // just past 2001::/23
		{"2001:db9::1", ""},        // just past documentation
		{"::ffff:8.8.8.8", ""},     // IPv4-mapped public
		{"0.0.0.0", "unspecified"}, // this network
		{"0.1.2.3", "unspecified"},
		{"10.1.2.3", "private"},
		{"100.64.0.1", "shared"},
		{"127.0.0.1", "loopback"},
		{"169.254.169.254", "link-local"},
		{"172.16.0.1", "private"},
		{"192.0.0.1", "IETF protocol assignment"},
		{"192.0.0.170", "IETF protocol assignment"},
		{"192.0.2.10", "documentation"},
		{"192.31.196.1", "AS112"},
		{"192.52.193.1", "AMT"},
		{"192.88.99.1", "6to4 relay"},
		{"192.168.1.1", "private"},
		{"192.175.48.1", "AS112"},
		{"198.18.0.1", "benchmarking"},
		{"198.19.255.254", "benchmarking"},
		{"198.51.100.7", "documentation"},
		{"203.0.113.9", "documentation"},
		{"224.0.0.1", "multicast"},
		{"239.255.255.250", "multicast"},
		{"240.0.0.1", "reserved"},
		{"255.255.255.255", "reserved"},
		{"::", "unspecified"},
		{"::1", "loopback"},
		{"::7f00:1", "IPv4-compatible"},  // ::127.0.0.1
		{"::808:808", "IPv4-compatible"}, // ::8.8.8.8 (deprecated form: refused whatever it embeds)
		{"::ffff:127.0.0.1", "loopback"}, // IPv4-mapped
		{"::ffff:10.0.0.1", "private"},   // IPv4-mapped
		{"::ffff:0:a00:1", "reserved"},   // IPv4-translated
		{"64:ff9b::7f00:1", "loopback"},  // NAT64 of 127.0.0.1
		{"64:ff9b::a9fe:a9fe", "link-local"},
		{"64:ff9b::c000:201", "documentation"},
		{"64:ff9b:1::a00:1", "local-use NAT64"},
		{"100::1", "discard-only"},
		{"2001::1", "IETF protocol assignment"}, // Teredo
		{"2001:0:4136:e378::1", "IETF protocol assignment"},
		{"2001:2::1", "IETF protocol assignment"},  // benchmarking
		{"2001:10::1", "IETF protocol assignment"}, // ORCHID
		{"2001:db8::1", "documentation"},
		{"2002:7f00:1::1", "loopback"},      // 6to4 of 127.0.0.1
		{"2002:a9fe:a9fe::1", "link-local"}, // 6to4 of metadata
		{"2002:a00:1::", "private"},         // 6to4 of 10.0.0.1
		{"2620:4f:8000::1", "AS112"},
		{"3fff::1", "documentation"},
		{"5f00::1", "reserved"}, // SRv6 SIDs, outside 2000::/3
		{"fc00::1", "private"},
		{"fd00:ec2::254", "private"},
		{"fe80::1", "link-local"},
		{"fec0::1", "site-local"},
		{"feff::1", "site-local"},
		{"ff02::1", "multicast"},
		{"4000::1", "reserved"}, // outside 2000::/3
		{"1::1", "reserved"},
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			a := netip.MustParseAddr(tc.addr)
			got := restrictedKind(a)
			if tc.kind == "" && got != "" || tc.kind != "" && !strings.Contains(got, tc.kind) {
				t.Fatalf("restrictedKind(%s) = %q, want %q", tc.addr, got, tc.kind)
			}
			host := a.String()
			if a.Is6() {
				host = "[" + host + "]"
			}
			err := ValidateEndpoint(context.Background(), "https://"+host+":443", false)
			dial := DialControl("tcp", host+":443", nil)
			if tc.kind == "" {
				if err != nil || dial != nil {
					t.Fatalf("%s refused: save %v, dial %v", tc.addr, err, dial)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.kind) || dial == nil || !strings.Contains(dial.Error(), tc.kind) {
				t.Fatalf("%s allowed or wrong reason: save %v, dial %v", tc.addr, err, dial)
			}
			if ValidateEndpoint(context.Background(), "https://"+host+":443", true) != nil {
				t.Fatalf("%s refused with private endpoints allowed", tc.addr)
			}
		})
	}
}

func TestValidateTokenURI(t *testing.T) {
	tests := []struct {
		uri          string
		allowPrivate bool
		wantErr      string
	}{
		{"", false, ""},
		{"https://52.216.1.1/token", false, ""},
		{"http://127.0.0.1:8080/token", true, ""},
		{"http://52.216.1.1/token", false, "https://"},
		{"https://127.0.0.1/token", false, "loopback"},
		{"https://localhost/token", false, "loopback"},
		{"https://169.254.169.254/computeMetadata/v1/token", false, "link-local"},
		{"https://[64:ff9b::7f00:1]/token", false, "loopback"},
		{"https://user:pw@52.216.1.1/token", false, "user credentials"},
		{"https://52.216.1.1/token#x", false, "fragment"},
		{"file:///etc/passwd", false, "https://"},
		{"file:///etc/passwd", true, "http:// or https://"},
	}
	for _, tc := range tests {
		err := ValidateTokenURI(context.Background(), tc.uri, tc.allowPrivate)
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("ValidateTokenURI(%q, %v): %v", tc.uri, tc.allowPrivate, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), "token_uri ") {
			t.Errorf("ValidateTokenURI(%q, %v) = %v, want error containing %q", tc.uri, tc.allowPrivate, err, tc.wantErr)
		}
	}
}
