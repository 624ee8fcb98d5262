package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
)

type outKind int

const (
	outTable outKind = iota
	outJSON
	outValue
)

// outputFormat is the parsed --output.
type outputFormat struct {
	kind  outKind
	paths [][]string // for value=: dotted paths, split
}

func parseOutput(s string) (outputFormat, error) {
	switch {
	case s == "table" || s == "":
		return outputFormat{kind: outTable}, nil
	case s == "json":
		return outputFormat{kind: outJSON}, nil
	case strings.HasPrefix(s, "value="):
		var f outputFormat
		f.kind = outValue
		for p := range strings.SplitSeq(strings.TrimPrefix(s, "value="), ",") {
			if p = strings.TrimSpace(p); p != "" {
				f.paths = append(f.paths, strings.Split(p, "."))
			}
		}
		if len(f.paths) == 0 {
			return f, usagef("--output value= needs at least one field path, e.g. value=id")
		}
		return f, nil
	}
	return outputFormat{}, usagef("--output %q: want table, json or value=PATH[,PATH]", s)
}

// columns are what a list shows in table form, per resource type. Paths
// are JSON names as in the API; anything else is in `get` and -o json.
var columns = map[protoreflect.FullName][]string{
	"auditexport.v1.StorageIntegration": {"id", "name", "provider", "destination", "linkedScheduleCount", "createTime"},
	"auditexport.v1.Workbook":           {"id", "name", "folder", "saved", "owner", "elements", "updateTime"},
	"auditexport.v1.Element":            {"id", "name", "source.table", "columns", "filters", "sort"},
	"auditexport.v1.Connection":         {"id", "name", "access", "tables"},
	"auditexport.v1.Schedule":           {"id", "name", "state", "cron", "timeZone", "format", "compression", "destination.cloudStorage.uri", "nextRunTime", "lastRun.state"},
	"auditexport.v1.ExportRun":          {"id", "trigger", "state", "rows", "bytes", "objectUri", "createTime", "error.code"},
	"auditexport.v1.User":               {"id", "email", "accountType", "active", "connectionGrants"},
	"auditexport.v1.ApiKey":             {"id", "name", "prefix", "userId", "createTime", "lastUsedTime", "revokeTime"},
}

// print writes a response in the chosen format.
func (e *env) print(m proto.Message) error {
	switch e.out.kind {
	case outJSON:
		b, err := stableJSON(m, "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(e.stdout, "%s\n", b)
		return err
	case outValue:
		return printValues(e.stdout, m, e.out.paths)
	}
	if next := nextPageToken(m); next != "" {
		defer e.notef("(more: --page-token %s, or --all)", next)
	}
	if q, ok := m.(*pb.QueryElementResponse); ok {
		return printQuery(e.stdout, q)
	}
	return printTable(e.stdout, m)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newTabWriter(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

// subject is what a response is about: the items of a list response, or
// the one resource of a response that only wraps it (GetScheduleResponse
// → Schedule). Otherwise (e.g. TestStorageIntegrationResponse, or
// CreateApiKeyResponse with its secret) the response itself.
func subject(m protoreflect.Message) (items []protoreflect.Message, single protoreflect.Message) {
	fields := m.Descriptor().Fields()
	var content []protoreflect.FieldDescriptor
	for i := 0; i < fields.Len(); i++ {
		if f := fields.Get(i); f.Name() != "next_page_token" && f.Name() != "total_rows" {
			content = append(content, f)
		}
	}
	if len(content) == 1 && content[0].Kind() == protoreflect.MessageKind && !content[0].IsMap() {
		f := content[0]
		if f.IsList() {
			l := m.Get(f).List()
			items = make([]protoreflect.Message, l.Len())
			for i := range items {
				items[i] = l.Get(i).Message()
			}
			return items, nil
		}
		if isResource(f.Message()) {
			return nil, m.Get(f).Message()
		}
	}
	return nil, m
}

// isResource tells API messages apart from well-known types (a response
// holding only a Duration is not "about" the Duration).
func isResource(d protoreflect.MessageDescriptor) bool {
	return d.ParentFile().Package() == "auditexport.v1"
}

func nextPageToken(m proto.Message) string {
	f := m.ProtoReflect().Descriptor().Fields().ByName("next_page_token")
	if f == nil {
		return ""
	}
	return m.ProtoReflect().Get(f).String()
}

// printTable shows a list as aligned columns and a single object as
// FIELD VALUE lines (every populated field, nested ones dotted).
func printTable(w io.Writer, m proto.Message) error {
	tw := newTabWriter(w)
	items, single := subject(m.ProtoReflect())
	if single == nil {
		var cols []string
		if len(items) > 0 {
			cols = columns[items[0].Descriptor().FullName()]
		} else {
			_, _ = fmt.Fprintln(tw, "(none)")
			return tw.Flush()
		}
		if cols == nil {
			cols = scalarFieldNames(items[0].Descriptor())
		}
		hdr := make([]string, len(cols))
		for i, c := range cols {
			hdr[i] = header(c)
		}
		fmt.Fprintln(tw, strings.Join(hdr, "\t"))
		for _, it := range items {
			cells := make([]string, len(cols))
			for i, c := range cols {
				cells[i] = dash(cell(it, strings.Split(c, ".")))
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t"))
		}
		return tw.Flush()
	}
	var kv [][2]string
	flatten(single, "", &kv)
	if len(kv) == 0 {
		fmt.Fprintln(tw, "ok")
	}
	for _, p := range kv {
		fmt.Fprintf(tw, "%s\t%s\n", p[0], p[1])
	}
	return tw.Flush()
}

// header turns a JSON path into a column title: destination.cloudStorage.uri → URI.
func header(path string) string {
	first, _, _ := strings.Cut(path, ".")
	last := path[strings.LastIndex(path, ".")+1:]
	if last != first && (last == "state" || last == "code") {
		last = first + "_" + last // lastRun.state → LAST_RUN_STATE, not a second STATE
	}
	var b strings.Builder
	for i, r := range last {
		if r >= 'A' && r <= 'Z' && i > 0 {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

func scalarFieldNames(d protoreflect.MessageDescriptor) []string {
	var out []string
	for i := 0; i < d.Fields().Len(); i++ {
		if f := d.Fields().Get(i); f.Kind() != protoreflect.MessageKind || !isResource(f.Message()) {
			out = append(out, f.JSONName())
		}
	}
	return out
}

// flatten lists populated fields in declaration order as "path value".
func flatten(m protoreflect.Message, prefix string, out *[][2]string) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if !m.Has(f) {
			continue
		}
		name := prefix + f.JSONName()
		v := m.Get(f)
		switch {
		case f.IsList() && f.Kind() == protoreflect.MessageKind && isResource(f.Message()):
			for j := 0; j < v.List().Len(); j++ {
				flatten(v.List().Get(j).Message(), fmt.Sprintf("%s[%d].", name, j), out)
			}
		case !f.IsList() && f.Kind() == protoreflect.MessageKind && isResource(f.Message()):
			flatten(v.Message(), name+".", out)
		default:
			*out = append(*out, [2]string{name, formatField(f, v, true)})
		}
	}
}

// lookup walks a dotted path of JSON (or proto) names; a number indexes a
// list. ok is false when the path names no field.
func lookup(m protoreflect.Message, path []string) (protoreflect.FieldDescriptor, protoreflect.Value, bool) {
	for i, p := range path {
		fields := m.Descriptor().Fields()
		f := fields.ByJSONName(p)
		if f == nil {
			f = fields.ByName(protoreflect.Name(p))
		}
		if f == nil {
			return nil, protoreflect.Value{}, false
		}
		v := m.Get(f)
		rest := path[i+1:]
		if len(rest) == 0 {
			if f.Kind() == protoreflect.MessageKind && !f.IsList() && !m.Has(f) {
				return f, protoreflect.Value{}, true // unset: no 1970 timestamps
			}
			return f, v, true
		}
		if f.IsList() && f.Kind() == protoreflect.MessageKind {
			var idx int
			if _, err := fmt.Sscan(rest[0], &idx); err != nil || idx < 0 {
				return nil, protoreflect.Value{}, false
			}
			if idx >= v.List().Len() {
				return f, protoreflect.Value{}, true // a valid path to nothing
			}
			m, rest = v.List().Get(idx).Message(), rest[1:]
			if len(rest) == 0 {
				return nil, protoreflect.Value{}, false
			}
			return lookup(m, rest)
		}
		if f.Kind() != protoreflect.MessageKind || f.IsList() || f.IsMap() {
			return nil, protoreflect.Value{}, false
		}
		m = v.Message()
	}
	return nil, protoreflect.Value{}, false
}

func cell(m protoreflect.Message, path []string) string {
	f, v, ok := lookup(m, path)
	if !ok || !v.IsValid() || (f.Kind() == protoreflect.EnumKind && !f.IsList() && v.Enum() == 0) {
		return "" // an absent lastRun is no "UNSPECIFIED" state
	}
	return formatField(f, v, true)
}

// printValues prints bare values (tab-separated, one line per item) for
// shell scripts: `auditctl schedules create ... -o value=id`.
func printValues(w io.Writer, m proto.Message, paths [][]string) error {
	items, single := subject(m.ProtoReflect())
	if single != nil {
		items = []protoreflect.Message{single}
	}
	for _, it := range items {
		vals := make([]string, len(paths))
		for i, p := range paths {
			f, v, ok := lookup(it, p)
			if !ok && it != m.ProtoReflect() {
				f, v, ok = lookup(m.ProtoReflect(), p) // e.g. nextPageToken
			}
			if !ok {
				return usagef("--output value=: %s has no field %q", it.Descriptor().Name(), strings.Join(p, "."))
			}
			if v.IsValid() {
				vals[i] = formatField(f, v, false)
			}
		}
		if _, err := fmt.Fprintln(w, strings.Join(vals, "\t")); err != nil {
			return err
		}
	}
	return nil
}

// stableJSON is protojson with its whitespace normalized: protojson adds
// random spaces on purpose (its output is not meant to be byte-stable),
// but scripts and tests compare auditctl's output. indent "" is compact.
func stableJSON(m proto.Message, indent string) ([]byte, error) {
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if indent == "" {
		err = json.Compact(&out, b)
	} else {
		err = json.Indent(&out, b, "", indent)
	}
	return out.Bytes(), err
}
