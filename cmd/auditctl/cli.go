package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	auditexport "github.com/auditexport/auditexport/clients/go"

	"github.com/auditexport/auditexport/internal/version"
)

// CLI is the command tree. Global flags are the connection settings; each
// resource is a command group named after the API's resources.
type CLI struct {
	Globals

	Integrations integrationsCmd  `cmd:"" aliases:"integration,int" help:"Storage integrations (IntegrationService)."`
	Workbooks    workbooksCmd     `cmd:"" aliases:"workbook,wb" help:"Workbooks and their elements (WorkbookService)."`
	Connections  connectionsCmd   `cmd:"" aliases:"connection" help:"Connections and their tables (WorkbookService)."`
	Schedules    schedulesCmd     `cmd:"" aliases:"schedule,sch" help:"Scheduled exports (ScheduleService)."`
	Runs         runsCmd          `cmd:"" aliases:"run" help:"Export runs: history, live progress, cancel (ScheduleService)."`
	Users        usersCmd         `cmd:"" aliases:"user" help:"Users and connection access (AccountService)."`
	Keys         keysCmd          `cmd:"" aliases:"key,api-keys" help:"API keys (AccountService)."`
	SigningKeys  signingKeysCmd   `cmd:"" name:"signing-keys" aliases:"signing-key" help:"Manifest signing keys (AccountService)."`
	Verify       verifyCmd        `cmd:"" help:"Verify exports in storage against their signed manifests: signatures, checksums, row counts, chains and incremental windows. Reads storage directly with your own credentials; exits 1 on any finding."`
	Config       configCmd        `cmd:"" help:"Show the effective configuration and where each value comes from (the API key masked)."`
	Version      versionCmd       `cmd:"" help:"Print the version of this binary (version, commit, Go version)."`
	VersionFlag  kong.VersionFlag `name:"version" help:"Print the version and exit."`
	Completion   completionCmd    `cmd:"" help:"Print the shell completion script: eval \"$(auditctl completion bash)\" (or zsh), auditctl completion fish | source."`
}

type completionCmd struct {
	Shell string `arg:"" enum:"bash,zsh,fish" help:"bash, zsh or fish."`
}

// Run prints the script that makes the shell ask this binary for
// completions (kongplete answers when COMP_LINE is set).
func (c completionCmd) Run(e *env) error {
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	var script string
	switch c.Shell {
	case "bash":
		script = fmt.Sprintf("complete -C %q auditctl\n", bin)
	case "zsh":
		script = fmt.Sprintf("autoload -U +X bashcompinit && bashcompinit\ncomplete -C %q auditctl\n", bin)
	case "fish":
		script = fmt.Sprintf("function __auditctl_complete\n    set -lx COMP_LINE (commandline -cp)\n    test -z (commandline -ct)\n    and set COMP_LINE \"$COMP_LINE \"\n    %q\nend\ncomplete -f -c auditctl -a '(__auditctl_complete)'\n", bin)
	}
	_, err = fmt.Fprint(e.stdout, script)
	return err
}

type versionCmd struct{}

func (versionCmd) Run(e *env) error {
	_, err := fmt.Fprintln(e.stdout, version.Long("auditctl"))
	return err
}

// Globals are the settings that may also come from the environment and the
// config file (see config.go for the precedence).
type Globals struct {
	ConfigFile        string        `name:"config" env:"AUDITCTL_CONFIG" placeholder:"FILE" help:"Config file (YAML; keys addr, api_key, api_key_file, output, tls, tls_ca_file, tls_server_name, tls_client_cert_file, tls_client_key_file, insecure, timeout). Default ${default_config}."`
	Addr              string        `name:"addr" env:"AUDITEXPORT_ADDR" default:"127.0.0.1:9090" help:"gRPC address of the server (host:port)."`
	APIKey            string        `name:"api-key" env:"AUDITEXPORT_API_KEY" placeholder:"KEY" help:"API key. Prefer the env variable, --api-key-file or the config file: command lines are visible to other users."`
	APIKeyFile        string        `name:"api-key-file" env:"AUDITEXPORT_API_KEY_FILE" placeholder:"FILE" help:"File holding the API key. Of a key and a key file the one set at the higher level (flag > env > config file) is used; both at one level is an error."`
	Output            string        `name:"output" short:"o" env:"AUDITCTL_OUTPUT" default:"table" placeholder:"FORMAT" help:"table (aligned columns), json (protojson of the response, lowerCamelCase), or value=PATH[,PATH] (bare values for scripts, e.g. value=id)."`
	TLS               bool          `name:"tls" env:"AUDITEXPORT_TLS" help:"Connect with TLS (system roots unless --tls-ca-file)."`
	TLSCAFile         string        `name:"tls-ca-file" env:"AUDITEXPORT_TLS_CA_FILE" placeholder:"FILE" help:"PEM bundle of CAs to trust (implies --tls)."`
	TLSServerName     string        `name:"tls-server-name" env:"AUDITEXPORT_TLS_SERVER_NAME" help:"Server name to verify (implies --tls)."`
	TLSClientCertFile string        `name:"tls-client-cert-file" env:"AUDITEXPORT_TLS_CLIENT_CERT_FILE" placeholder:"FILE" help:"PEM client certificate for servers that require one (mutual TLS; with --tls-client-key-file; implies --tls)."`
	TLSClientKeyFile  string        `name:"tls-client-key-file" env:"AUDITEXPORT_TLS_CLIENT_KEY_FILE" placeholder:"FILE" help:"PEM private key of --tls-client-cert-file."`
	Insecure          bool          `name:"insecure" env:"AUDITEXPORT_INSECURE" help:"Allow sending the API key without TLS to a non-loopback address (e.g. to a TLS-terminating sidecar on a trusted network)."`
	Timeout           time.Duration `name:"timeout" env:"AUDITCTL_TIMEOUT" default:"30s" help:"Deadline of each call (exports being followed are not limited)."`
}

// env is what every command's Run gets: I/O, settings and a lazily dialed
// client (so `config` and `--help` work without a key or a server).
type env struct {
	ctx            context.Context
	stdin          io.Reader
	stdout, stderr io.Writer
	g              *Globals
	files          *configFiles
	given          map[string]bool
	tty            bool

	out          outputFormat
	apiKey       string
	apiKeySource string // where apiKey came from, for `config`
	client       *auditexport.Client
}

// setup validates the globals that do not need the server.
func (e *env) setup() error {
	out, err := parseOutput(e.g.Output)
	if err != nil {
		return err
	}
	e.out = out
	return e.pickAPIKey()
}

// pickAPIKey chooses between the key (--api-key) and the key file
// (--api-key-file), each of which may come from a flag, the environment or
// the config file: the one set at the higher level wins, as for any other
// setting, and both at the same level is a mistake worth an error.
func (e *env) pickAPIKey() error {
	key, file := e.origin("api-key"), e.origin("api-key-file")
	if e.g.APIKey == "" {
		key.level = levelDefault
	}
	if e.g.APIKeyFile == "" {
		file.level = levelDefault
	}
	switch {
	case key.level == levelDefault && file.level == levelDefault:
		return nil
	case key.level == file.level:
		return usagef("both %s and %s are set %s: keep one of them", key.name, file.name, key.where())
	case key.level > file.level:
		e.apiKey, e.apiKeySource = e.g.APIKey, key.source()
		return nil
	}
	b, err := os.ReadFile(e.g.APIKeyFile)
	if err != nil {
		return fmt.Errorf("%s: %w", file.name, err)
	}
	e.apiKey, e.apiKeySource = strings.TrimSpace(string(b)), file.source()
	return nil
}

// api dials on first use.
func (e *env) api() (*auditexport.Client, error) {
	if e.client != nil {
		return e.client, nil
	}
	if e.apiKey == "" {
		return nil, usagef("no API key: set AUDITEXPORT_API_KEY, --api-key-file, or api_key in %s", e.files.describePath())
	}
	var opts []auditexport.Option
	useTLS := e.g.TLS || e.g.TLSCAFile != "" || e.g.TLSServerName != "" || e.g.TLSClientCertFile != "" || e.g.TLSClientKeyFile != ""
	if !useTLS && !e.g.Insecure && !isLoopbackTarget(e.g.Addr) {
		return nil, usagef("refusing to send the API key in cleartext to %s: connect with --tls (or --tls-ca-file), "+
			"or give --insecure if the network is trusted (e.g. a TLS-terminating sidecar)", e.g.Addr)
	}
	if useTLS {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: e.g.TLSServerName}
		if e.g.TLSCAFile != "" {
			pem, err := os.ReadFile(e.g.TLSCAFile)
			if err != nil {
				return nil, usagef("--tls-ca-file: %v", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, usagef("--tls-ca-file %s: no PEM certificates in it", e.g.TLSCAFile)
			}
		}
		if (e.g.TLSClientCertFile == "") != (e.g.TLSClientKeyFile == "") {
			return nil, usagef("--tls-client-cert-file and --tls-client-key-file: give both or neither")
		}
		if e.g.TLSClientCertFile != "" {
			pair, err := tls.LoadX509KeyPair(e.g.TLSClientCertFile, e.g.TLSClientKeyFile)
			if err != nil {
				return nil, usagef("--tls-client-cert-file / --tls-client-key-file: %v", err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		opts = append(opts, auditexport.WithTLS(cfg))
	}
	c, err := auditexport.Dial(e.ctx, e.g.Addr, e.apiKey, opts...)
	if err != nil {
		return nil, usagef("%v", err)
	}
	e.client = c
	return c, nil
}

// isLoopbackTarget reports whether the gRPC target stays on this machine:
// a loopback address (127.0.0.0/8, ::1), localhost, or a unix socket.
// Anything it cannot read counts as remote.
func isLoopbackTarget(target string) bool {
	if strings.HasPrefix(target, "unix:") || strings.HasPrefix(target, "unix-abstract:") {
		return true
	}
	if _, rest, ok := strings.Cut(target, ":///"); ok { // dns:///host:port, passthrough:///host:port
		target = rest
	}
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		host = strings.Trim(target, "[]") // no port
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (e *env) close() {
	if e.client != nil {
		_ = e.client.Close()
	}
}

// call bounds one unary call by --timeout; follow-mode commands use e.ctx.
func (e *env) call() (context.Context, context.CancelFunc) {
	if e.g.Timeout <= 0 {
		return context.WithCancel(e.ctx)
	}
	return context.WithTimeout(e.ctx, e.g.Timeout)
}

// notef writes a human note to stderr, so stdout stays parseable.
func (e *env) notef(format string, args ...any) {
	fmt.Fprintf(e.stderr, format+"\n", args...)
}
