package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/alecthomas/kong"
	"go.yaml.in/yaml/v3"
)

// configKeys are the settings a config file may hold: the global flags
// with dashes as underscores. Command flags are deliberately not settable
// from the file, so a stray key cannot silently change what a command does.
var configKeys = []string{"addr", "api_key", "api_key_file", "output", "tls", "tls_ca_file", "tls_server_name", "tls_client_cert_file", "tls_client_key_file", "insecure", "timeout"}

// globalEnv names the environment variable of each global flag.
var globalEnv = map[string]string{
	"addr": "AUDITEXPORT_ADDR", "api-key": "AUDITEXPORT_API_KEY", "api-key-file": "AUDITEXPORT_API_KEY_FILE",
	"output": "AUDITCTL_OUTPUT", "tls": "AUDITEXPORT_TLS", "tls-ca-file": "AUDITEXPORT_TLS_CA_FILE",
	"tls-server-name": "AUDITEXPORT_TLS_SERVER_NAME", "tls-client-cert-file": "AUDITEXPORT_TLS_CLIENT_CERT_FILE",
	"tls-client-key-file": "AUDITEXPORT_TLS_CLIENT_KEY_FILE", "insecure": "AUDITEXPORT_INSECURE", "timeout": "AUDITCTL_TIMEOUT",
}

// Levels of the precedence, lowest first.
const (
	levelDefault = iota
	levelFile
	levelEnv
	levelFlag
)

// origin is where a global setting's value came from.
type origin struct {
	level int
	name  string // as the user wrote it: --addr, AUDITEXPORT_ADDR or addr
	file  string // the config file, at levelFile
}

// origin finds where the global flag's value came from, by the precedence
// flags > env > config file > defaults.
func (e *env) origin(flag string) origin {
	key := strings.ReplaceAll(flag, "-", "_")
	switch {
	case e.given[flag]:
		return origin{level: levelFlag, name: "--" + flag}
	case envSet([]string{globalEnv[flag]}) != "":
		return origin{level: levelEnv, name: globalEnv[flag]}
	case e.files.values[key] != "":
		return origin{level: levelFile, name: key, file: e.files.path}
	}
	return origin{level: levelDefault, name: flag}
}

// source is the SOURCE column of `auditctl config`.
func (o origin) source() string {
	switch o.level {
	case levelFlag:
		return "flag " + o.name
	case levelEnv:
		return "env " + o.name
	case levelFile:
		return "file " + o.file
	}
	return "default"
}

// where says where two settings of one level both are.
func (o origin) where() string {
	switch o.level {
	case levelFlag:
		return "on the command line"
	case levelEnv:
		return "in the environment"
	}
	return "in the config file " + o.file
}

// configFiles is the config file chosen for this invocation.
type configFiles struct {
	defaultPath string
	path        string // the file read ("" if none)
	explicit    bool   // named by --config or AUDITCTL_CONFIG (then it must exist)
	values      map[string]string
}

// defaultConfigPath follows the XDG base directory spec.
func defaultConfigPath() string {
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "auditctl", "config.yaml")
}

// loadConfigFile reads the config file before kong parses the command
// line: the file's values must be known while parsing (kong resolvers), but
// which file to read is itself a flag. So --config is looked up here by a
// plain scan of the arguments, then declared again in Globals for --help.
func loadConfigFile(args []string) (*configFiles, error) {
	c := &configFiles{defaultPath: defaultConfigPath(), values: map[string]string{}}
	path, explicit := scanConfigFlag(args)
	if !explicit {
		if v, ok := os.LookupEnv("AUDITCTL_CONFIG"); ok && v != "" {
			path, explicit = v, true
		}
	}
	if !explicit {
		path = c.defaultPath
	}
	c.explicit = explicit
	if path == "" {
		return c, nil
	}
	raw, err := os.ReadFile(kong.ExpandPath(path))
	if err != nil {
		if os.IsNotExist(err) && !explicit {
			return c, nil // no config file is the normal case
		}
		return nil, fmt.Errorf("config file: %w", err)
	}
	c.path = path
	if err := c.parse(raw); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return c, nil
}

func scanConfigFlag(args []string) (string, bool) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return "", false
		case a == "--config" && i+1 < len(args):
			return args[i+1], true
		case strings.HasPrefix(a, "--config="):
			return strings.TrimPrefix(a, "--config="), true
		}
	}
	return "", false
}

// parse accepts a flat YAML mapping (JSON is YAML too).
func (c *configFiles) parse(raw []byte) error {
	var m map[string]any
	if err := yaml.Unmarshal(raw, &m); err != nil {
		return err
	}
	var unknown []string
	for k, v := range m {
		key := strings.ReplaceAll(k, "-", "_")
		if !slices.Contains(configKeys, key) {
			unknown = append(unknown, k)
			continue
		}
		switch v.(type) {
		case map[string]any, []any:
			return fmt.Errorf("%s: want a single value", k)
		case nil:
			continue
		}
		c.values[key] = fmt.Sprint(v)
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("unknown key(s) %s (known: %s)", strings.Join(unknown, ", "), strings.Join(configKeys, ", "))
	}
	return nil
}

// resolver feeds the file's values to kong. Kong lets resolvers override
// environment variables; the precedence we promise is flags > env > file >
// defaults, so a flag whose env variable is set is left alone here.
func (c *configFiles) resolver() kong.Resolver {
	return kong.ResolverFunc(func(_ *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
		v, ok := c.values[strings.ReplaceAll(flag.Name, "-", "_")]
		if !ok || envSet(flag.Envs) != "" {
			return nil, nil
		}
		return v, nil
	})
}

// envSet returns the first of names that is set in the environment.
func envSet(names []string) string {
	for _, n := range names {
		if _, ok := os.LookupEnv(n); ok {
			return n
		}
	}
	return ""
}

func (c *configFiles) describePath() string {
	if c.path != "" {
		return c.path
	}
	return c.defaultPath + " (absent)"
}

// maskKey keeps the key's public prefix (aek_<8 chars>, which ListApiKeys
// also shows) so a user can tell keys apart, and hides the secret part.
func maskKey(k string) string {
	if k == "" {
		return ""
	}
	if len(k) > 12 && strings.HasPrefix(k, "aek_") {
		return k[:12] + "_********"
	}
	return "********"
}

type configCmd struct{}

func (configCmd) Run(e *env) error {
	type row struct{ key, value, source string }
	source := func(flag string) string { return e.origin(flag).source() }
	keySource, keyFileSource := "default", source("api-key-file")
	if e.apiKeySource != "" {
		keySource = e.apiKeySource
	}
	if e.g.APIKeyFile != "" && keySource != keyFileSource {
		keyFileSource += " (not used: the API key from " + keySource + " wins)"
	}
	rows := []row{
		{"addr", e.g.Addr, source("addr")},
		{"api_key", maskKey(e.apiKey), keySource},
		{"api_key_file", e.g.APIKeyFile, keyFileSource},
		{"output", e.g.Output, source("output")},
		{"tls", fmt.Sprint(e.g.TLS), source("tls")},
		{"tls_ca_file", e.g.TLSCAFile, source("tls-ca-file")},
		{"tls_server_name", e.g.TLSServerName, source("tls-server-name")},
		{"tls_client_cert_file", e.g.TLSClientCertFile, source("tls-client-cert-file")},
		{"tls_client_key_file", e.g.TLSClientKeyFile, source("tls-client-key-file")},
		{"insecure", fmt.Sprint(e.g.Insecure), source("insecure")},
		{"timeout", e.g.Timeout.String(), source("timeout")},
	}
	if e.out.kind == outJSON {
		m := map[string]any{"configFile": e.files.describePath()}
		for _, r := range rows {
			m[r.key] = map[string]string{"value": r.value, "source": r.source}
		}
		return writeJSON(e.stdout, m)
	}
	tw := newTabWriter(e.stdout)
	fmt.Fprintf(tw, "KEY\tVALUE\tSOURCE\n")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.key, dash(r.value), r.source)
	}
	fmt.Fprintf(tw, "config_file\t%s\t\n", e.files.describePath())
	return tw.Flush()
}
