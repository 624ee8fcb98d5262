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
