package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestAPIKeyPrecedence: of --api-key and --api-key-file (each from a flag,
// env or the config file) the one set at the higher level is used, and
// `config` says which; both at one level is a usage error.
func TestAPIKeyPrecedence(t *testing.T) {
	f := &fakeAPI{}
	addr := startFake(t, f)
	dir := t.TempDir()
	const (
		fileKey    = "aek_cfgfile1_secretsecretsecret"
		keyFileKey = "aek_keyfile1_secretsecretsecret"
		envKey     = "aek_envvar01_secretsecretsecret"
	)
	cfg := filepath.Join(dir, "c.yaml")
	keyFile := filepath.Join(dir, "key")
	os.WriteFile(cfg, []byte("api_key: "+fileKey+"\n"), 0o600)
	os.WriteFile(keyFile, []byte(keyFileKey+"\n"), 0o600)

	// The key file on the command line beats api_key in the config file …
	base := []string{"--config", cfg, "--addr", addr}
	if r := run("", append(base, "--api-key-file", keyFile, "schedules", "get", "sch_1")...); r.code != 0 {
		t.Fatalf("%+v", r)
	}
	c := configJSON(t, run("", append(base, "--api-key-file", keyFile, "config", "-o", "json")...).stdout)
	if c["api_key"]["value"] != maskKey(keyFileKey) || c["api_key"]["source"] != "flag --api-key-file" {
		t.Errorf("flag key file vs config api_key: %v", c)
	}
	// … and beats AUDITEXPORT_API_KEY.
	t.Setenv("AUDITEXPORT_API_KEY", envKey)
	if r := run("", append(base, "--api-key-file", keyFile, "schedules", "get", "sch_1")...); r.code != 0 {
		t.Fatalf("%+v", r)
	}
	c = configJSON(t, run("", append(base, "--api-key-file", keyFile, "config", "-o", "json")...).stdout)
	if c["api_key"]["value"] != maskKey(keyFileKey) || c["api_key"]["source"] != "flag --api-key-file" {
		t.Errorf("flag key file vs env key: %v", c)
	}
	// Without the flag, the env key beats the config file's key.
	if r := run("", append(base, "schedules", "get", "sch_1")...); r.code != 0 {
		t.Fatalf("%+v", r)
	}
	c = configJSON(t, run("", append(base, "config", "-o", "json")...).stdout)
	if c["api_key"]["source"] != "env AUDITEXPORT_API_KEY" {
		t.Errorf("env key vs config api_key: %v", c)
	}
	if want := []string{"Bearer " + keyFileKey, "Bearer " + keyFileKey, "Bearer " + envKey}; !slices.Equal(f.auth, want) {
		t.Errorf("keys sent: %q, want %q", f.auth, want)
	}
	// A key file named by env loses to a key flag; `config` says the file is not used.
	os.Unsetenv("AUDITEXPORT_API_KEY")
	t.Setenv("AUDITEXPORT_API_KEY_FILE", keyFile)
	c = configJSON(t, run("", append(base, "--api-key", envKey, "config", "-o", "json")...).stdout)
	if c["api_key"]["value"] != maskKey(envKey) || c["api_key"]["source"] != "flag --api-key" ||
		!strings.Contains(c["api_key_file"]["source"], "not used") {
		t.Errorf("flag key vs env key file: %v", c)
	}

	// Both at one level: a usage error naming both.
	for name, args := range map[string][]string{
		"flags": {"--api-key", envKey, "--api-key-file", keyFile},
		"env":   {},
	} {
		if name == "env" {
			t.Setenv("AUDITEXPORT_API_KEY", envKey)
		}
		r := run("", append(append([]string{"--addr", addr}, args...), "schedules", "get", "sch_1")...)
		want := map[string][]string{"flags": {"--api-key ", "--api-key-file"}, "env": {"AUDITEXPORT_API_KEY ", "AUDITEXPORT_API_KEY_FILE"}}[name]
		if r.code != exitUsage || !strings.Contains(r.stderr, want[0]) || !strings.Contains(r.stderr, want[1]) {
			t.Errorf("both %s: %+v", name, r)
		}
	}
}

// TestCleartextKeyNeedsInsecure: without TLS the key may only go to a
// loopback address, unless --insecure (or its env variable or config key).
func TestCleartextKeyNeedsInsecure(t *testing.T) {
	isolateEnv(t)
	remote := []string{"--addr", "192.0.2.1:9090", "--api-key", "aek_x", "--timeout", "200ms"}
	r := run("", append(remote, "users", "me")...)
	if r.code != exitUsage || !strings.Contains(r.stderr, "cleartext") || !strings.Contains(r.stderr, "--tls") || !strings.Contains(r.stderr, "--insecure") {
		t.Errorf("remote address without TLS: %+v", r)
	}
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte("insecure: true\n"), 0o600)
	for name, args := range map[string][]string{
		"flag": {"--insecure"},
		"file": {"--config", cfg},
	} {
		// Allowed: the call is made (and fails, there is no server).
		if r := run("", append(append(args, remote...), "users", "me")...); r.code != exitError || strings.Contains(r.stderr, "cleartext") {
			t.Errorf("--insecure by %s: %+v", name, r)
		}
	}
	t.Setenv("AUDITEXPORT_INSECURE", "true")
	c := configJSON(t, run("", append(remote, "config", "-o", "json")...).stdout)
	if c["insecure"]["value"] != "true" || c["insecure"]["source"] != "env AUDITEXPORT_INSECURE" {
		t.Errorf("config: %v", c)
	}
	if r := run("", append(remote, "users", "me")...); r.code != exitError {
		t.Errorf("--insecure by env: %+v", r)
	}
}

func TestIsLoopbackTarget(t *testing.T) {
	for target, want := range map[string]bool{
		"127.0.0.1:9090": true, "127.3.4.5:1": true, "[::1]:9090": true, "localhost:9090": true, "LOCALHOST.:1": true,
		"localhost": true, "dns:///localhost:9090": true, "unix:///run/auditexport.sock": true,
		"10.0.0.1:9090": false, "[::]:9090": false, "0.0.0.0:9090": false, "api.example.com:443": false,
		"localhost.example.com:1": false, "dns:///api.example.com:443": false, "": false,
	} {
		if got := isLoopbackTarget(target); got != want {
			t.Errorf("isLoopbackTarget(%q) = %v, want %v", target, got, want)
		}
	}
}
