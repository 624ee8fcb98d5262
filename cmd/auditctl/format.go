package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
)

// formatField renders one field's value. short (tables) trims enum
// prefixes and counts nested lists; otherwise (value= output) enums keep
// their API names so scripts can compare them with the documentation.
func formatField(f protoreflect.FieldDescriptor, v protoreflect.Value, short bool) string {
	if f.IsList() {
		l := v.List()
		if f.Kind() == protoreflect.MessageKind && isResource(f.Message()) {
			return strconv.Itoa(l.Len())
		}
		parts := make([]string, l.Len())
		for i := range parts {
			parts[i] = formatScalar(f, l.Get(i), short)
		}
		return strings.Join(parts, ",")
	}
	return formatScalar(f, v, short)
}

func formatScalar(f protoreflect.FieldDescriptor, v protoreflect.Value, short bool) string {
	switch f.Kind() {
	case protoreflect.EnumKind:
		ev := f.Enum().Values().ByNumber(v.Enum())
		if ev == nil {
			return strconv.Itoa(int(v.Enum()))
		}
		if short {
			return trimEnum(f.Enum(), string(ev.Name()))
		}
		return string(ev.Name())
	case protoreflect.MessageKind:
		return formatMessage(v.Message())
	case protoreflect.BytesKind:
		return fmt.Sprintf("%x", v.Bytes())
	}
	return v.String()
}

// trimEnum drops the enum's own prefix: RUN_STATE_SUCCEEDED → SUCCEEDED.
func trimEnum(d protoreflect.EnumDescriptor, name string) string {
	zero := string(d.Values().Get(0).Name())
	prefix := strings.TrimSuffix(zero, "UNSPECIFIED")
	if prefix == zero {
		return name
	}
	return strings.TrimPrefix(name, prefix)
}

func formatMessage(m protoreflect.Message) string {
	switch x := m.Interface().(type) {
	case *timestamppb.Timestamp:
		return x.AsTime().UTC().Format(time.RFC3339)
	case *durationpb.Duration:
		return x.AsDuration().String()
	case *structpb.Value:
		return formatValue(x)
	}
	b, _ := stableJSON(m.Interface(), "")
	return string(b)
}

// formatValue renders a query cell: strings bare, null empty.
func formatValue(v *structpb.Value) string {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		return k.StringValue
	case *structpb.Value_NullValue, nil:
		return ""
	case *structpb.Value_NumberValue:
		return strconv.FormatFloat(k.NumberValue, 'f', -1, 64)
	case *structpb.Value_BoolValue:
		return strconv.FormatBool(k.BoolValue)
	}
	b, _ := stableJSON(v, "")
	return string(b)
}

// dash marks an empty table cell so columns stay readable.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printQuery shows an element's rows under its column names. Cells are
// cut short and flattened to one line so a wide METADATA column does not
// wreck the alignment; -o json has them whole.
func printQuery(w io.Writer, q *pb.QueryElementResponse) error {
	tw := newTabWriter(w)
	hdr := make([]string, len(q.GetColumns()))
	for i, c := range q.GetColumns() {
		hdr[i] = c.GetName()
	}
	fmt.Fprintln(tw, strings.Join(hdr, "\t"))
	for _, r := range q.GetRows() {
		cells := make([]string, len(r.GetValues()))
		for i, v := range r.GetValues() {
			cells[i] = dash(clip(formatValue(v), 60))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "(%d of %d rows)\n", len(q.GetRows()), q.GetTotalRows())
	return err
}

func clip(s string, n int) string {
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\t' || r == '\r' }), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// humanBytes is for progress and summaries, where 52428800 says less than 50.0 MiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// parseEnum accepts an enum value by its API name (FORMAT_CSV), without
// the prefix (CSV) or in lower case (csv), so `--format csv` works.
func parseEnum(d protoreflect.EnumDescriptor, flag, s string) (protoreflect.EnumNumber, error) {
	want := strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), "-", "_"))
	var names []string
	for i := 0; i < d.Values().Len(); i++ {
		ev := d.Values().Get(i)
		if ev.Number() == 0 {
			continue
		}
		short := trimEnum(d, string(ev.Name()))
		if want == string(ev.Name()) || want == short {
			return ev.Number(), nil
		}
		names = append(names, strings.ToLower(short))
	}
	return 0, usagef("--%s %q: want one of %s", flag, s, strings.Join(names, ", "))
}
