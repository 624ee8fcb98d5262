package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	auditexport "github.com/auditexport/auditexport/clients/go"
)

// do runs one unary call under --timeout and prints its response.
func (e *env) do(call func(ctx context.Context, c *auditexport.Client) (proto.Message, error)) error {
	c, err := e.api()
	if err != nil {
		return err
	}
	ctx, cancel := e.call()
	defer cancel()
	resp, err := call(ctx, c)
	if err != nil {
		return err
	}
	return e.print(resp)
}

// listFlags are the paging flags of every List RPC.
type listFlags struct {
	PageSize  int32  `name:"page-size" help:"Items per page (server default 50, max 1000)."`
	PageToken string `name:"page-token" help:"Continue from a previous page."`
	All       bool   `name:"all" help:"Follow next_page_token to the last page."`
}

// list calls a List RPC, with --all page after page, appending the items
// (proto.Merge appends repeated fields) into one response.
func (e *env) list(lf listFlags, fetch func(ctx context.Context, c *auditexport.Client, token string) (proto.Message, error)) error {
	return e.do(func(ctx context.Context, c *auditexport.Client) (proto.Message, error) {
		var acc proto.Message
		token := lf.PageToken
		for {
			resp, err := fetch(ctx, c, token)
			if err != nil {
				return nil, err
			}
			if acc == nil {
				acc = resp
			} else {
				proto.Merge(acc, resp)
			}
			token = nextPageToken(resp)
			if !lf.All || token == "" {
				break
			}
		}
		if lf.All {
			m := acc.ProtoReflect()
			m.Clear(m.Descriptor().Fields().ByName("next_page_token"))
		}
		return acc, nil
	})
}

// fromFile is the escape hatch for fields that have no flag: a request
// as protojson (the API's JSON), from a file or "-" for stdin. Flags given
// as well override the file's fields.
type fromFile struct {
	FromFile string `name:"from-file" placeholder:"FILE" help:"Request as JSON (protojson, as in the REST API); - reads stdin. Flags given as well override its fields."`
}

func (f fromFile) load(e *env, req proto.Message) error {
	if f.FromFile == "" {
		return nil
	}
	raw, err := readInput(e, f.FromFile)
	if err != nil {
		return usagef("--from-file: %v", err)
	}
	if err := protojson.Unmarshal(raw, req); err != nil {
		return usagef("--from-file %s: not a %s: %s", f.FromFile, req.ProtoReflect().Descriptor().Name(), jsonErrorText(err))
	}
	return nil
}

// protojsonAt is the position protojson puts into its errors (after a
// "proto:" whose space protojson randomizes).
var protojsonAt = regexp.MustCompile(`(syntax error )?\(line (\d+):(\d+)\): (.*)`)

// jsonErrorText describes a protojson error without the offending text:
// protojson quotes the bad token (an unquoted secretAccessKey value, say),
// and request files hold secrets. What is kept: the position, the field
// whose value is wrong, and unknown or repeated field names.
func jsonErrorText(err error) string {
	msg := err.Error()
	m := protojsonAt.FindStringSubmatch(msg)
	if m == nil {
		// unexpected EOF, required fields: no token in these
		return strings.TrimLeft(strings.TrimPrefix(msg, "proto:"), " \u00a0")
	}
	text := fmt.Sprintf("at line %s, column %s", m[2], m[3])
	if m[1] != "" {
		text = "syntax error " + text
	}
	switch detail := m[4]; {
	case strings.HasPrefix(detail, "unknown field "), strings.HasPrefix(detail, "duplicate field "):
		return text + ": " + detail // a field name, not a value
	case strings.HasPrefix(detail, "invalid value for "):
		detail, _, _ = strings.Cut(detail, ": ") // "invalid value for string field secretAccessKey"
		return text + ": " + detail + " (the value is not shown: it may be a secret)"
	}
	return text + " (the offending text is not shown: it may be a secret)" // unexpected token X, invalid value X, …
}

func readInput(e *env, path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(e.stdin)
	}
	return os.ReadFile(path)
}

// secret reads a credential from its file flag ("-" = stdin) or else from
// its environment variable. Secrets have no value flags: command lines
// end up in shell history and in `ps` output.
func (e *env) secret(fileFlag, path, envName string) (string, bool, error) {
	if path != "" {
		raw, err := readInput(e, path)
		if err != nil {
			return "", false, usagef("--%s: %v", fileFlag, err)
		}
		return strings.TrimRight(string(raw), "\r\n"), true, nil
	}
	if v, ok := os.LookupEnv(envName); ok && v != "" {
		return v, true, nil
	}
	return "", false, nil
}

// requiredSecret is secret for a credential whose identity flag was given.
func (e *env) requiredSecret(idFlag, fileFlag, path, envName string) (string, error) {
	v, ok, err := e.secret(fileFlag, path, envName)
	if err == nil && !ok {
		err = usagef("--%s needs its secret: --%s FILE (- for stdin) or env %s", idFlag, fileFlag, envName)
	}
	return v, err
}

// maskField maps a command-line flag to the field path it updates.
type maskField struct{ flag, path string }

// updateMask lists the fields whose flags were given on the command line,
// plus those of the request file's own mask.
func (e *env) updateMask(file *fieldmaskpb.FieldMask, fields ...maskField) *fieldmaskpb.FieldMask {
	m := &fieldmaskpb.FieldMask{Paths: append([]string(nil), file.GetPaths()...)}
	seen := map[string]bool{}
	for _, p := range m.Paths {
		seen[p] = true
	}
	for _, f := range fields {
		if e.given[f.flag] && !seen[f.path] {
			m.Paths = append(m.Paths, f.path)
			seen[f.path] = true
		}
	}
	return m
}

// setIfGiven copies a flag's value into the request when the flag was
// typed (so --from-file values survive flags that were not).
func setIfGiven[T any](e *env, flag string, dst *T, v T) {
	if e.given[flag] {
		*dst = v
	}
}

// enumFlag parses an enum flag that has a value (given, or defaulted).
func enumFlag[T ~int32](flag, value string, d protoreflect.EnumDescriptor, dst *T) error {
	if value == "" {
		return nil
	}
	n, err := parseEnum(d, flag, value)
	if err != nil {
		return err
	}
	*dst = T(n)
	return nil
}
