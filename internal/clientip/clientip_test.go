package clientip

import "testing"

func TestResolve(t *testing.T) {
	trusted, err := Parse([]string{"10.0.0.0/8", "127.0.0.1", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"untrusted peer ignores the header", "203.0.113.9:5000", []string{"1.2.3.4"}, "203.0.113.9"},
		{"no proxies configured", "127.0.0.1:1", nil, "127.0.0.1"},
		{"trusted peer, one hop", "127.0.0.1:1", []string{"198.51.100.7"}, "198.51.100.7"},
		{"client-sent prefix is skipped", "10.1.1.1:1", []string{"6.6.6.6, 198.51.100.7, 10.2.2.2"}, "198.51.100.7"},
		{"several header lines", "10.1.1.1:1", []string{"6.6.6.6", "198.51.100.7"}, "198.51.100.7"},
		{"only proxies: the leftmost", "10.1.1.1:1", []string{"10.3.3.3, 10.2.2.2"}, "10.3.3.3"},
		{"garbage stops the walk", "10.1.1.1:1", []string{"6.6.6.6, nonsense, 10.2.2.2"}, "10.2.2.2"},
		{"ports and brackets", "[::1]:9", []string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{"mapped v4 peer", "[::ffff:127.0.0.1]:9", []string{"198.51.100.7"}, "198.51.100.7"},
		{"empty header", "127.0.0.1:1", []string{""}, "127.0.0.1"},
	}
	for _, c := range cases {
		if got := trusted.Resolve(c.peer, c.xff); got != c.want {
			t.Errorf("%s: Resolve(%q, %q) = %q, want %q", c.name, c.peer, c.xff, got, c.want)
		}
	}
	if got := Trusted(nil).Resolve("127.0.0.1:1", []string{"1.2.3.4"}); got != "127.0.0.1" {
		t.Errorf("no trusted proxies: got %q", got)
	}
	if _, err := Parse([]string{"not-an-ip"}); err == nil {
		t.Error("Parse accepted garbage")
	}
}
