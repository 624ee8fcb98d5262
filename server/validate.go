package server

import (
	"encoding/json"
	"fmt"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/auditexport/auditexport/internal/elemspec"
)

// text validates a free-text field: valid UTF-8, no control characters,
// at most max characters, and non-empty when required.
func text(v *violations, field, s string, required bool, max int) {
	switch {
	case !utf8.ValidString(s):
		v.add(field, "must be valid UTF-8")
	case required && strings.TrimSpace(s) == "":
		v.add(field, "is required")
	case utf8.RuneCountInString(s) > max:
		v.add(field, "must be at most %d characters (got %d)", max, utf8.RuneCountInString(s))
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		v.add(field, "must not contain control characters")
	}
}

// idField validates a resource id argument.
func idField(v *violations, field, s string) {
	switch {
	case s == "":
		v.add(field, "is required")
	case len(s) > 64 || !utf8.ValidString(s):
		v.add(field, "is not a valid id")
	}
}

// email validates a bare e-mail address.
func email(v *violations, field, s string) {
	if !utf8.ValidString(s) {
		v.add(field, "must be valid UTF-8")
		return
	}
	if s == "" {
		v.add(field, "is required")
		return
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || len(s) > 254 {
		v.add(field, "must be a plain e-mail address like name@example.com")
	}
}

// maskPaths checks an update mask against the allowed top-level paths and
// returns the top-level fields to change. Nested paths (as REST PATCH
// generates from a body, e.g. "destination.cloud_storage.uri") count for
// their top-level field. Output-only paths are ignored, per AIP-161, so a
// client may send back a resource it read. An empty mask is an error:
// updates must say what they change.
func maskPaths(v *violations, m *fieldmaskpb.FieldMask, allowed, outputOnly []string) map[string]bool {
	paths := map[string]bool{}
	if m == nil || len(m.Paths) == 0 {
		v.add("update_mask", "is required: list the fields to change (allowed: %s)", strings.Join(allowed, ", "))
		return paths
	}
	for _, p := range m.Paths {
		top, _, _ := strings.Cut(snakeCase(p), ".")
		switch {
		case contains(allowed, top):
			paths[top] = true
		case contains(outputOnly, top):
		default:
			v.add("update_mask", "unknown path %q (allowed: %s)", p, strings.Join(allowed, ", "))
		}
	}
	if len(paths) == 0 && v.empty() {
		v.add("update_mask", "names no field that can change (allowed: %s)", strings.Join(allowed, ", "))
	}
	return paths
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// snakeCase accepts lowerCamelCase mask paths (what REST clients write,
// e.g. ?updateMask=timeZone) as well as proto names.
func snakeCase(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsUpper(r) {
			b.WriteByte('_')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// undeclaredEnums adds a violation for every enum field set anywhere in m
// (nested messages, lists and map values included) to a number its enum does
// not declare. Proto3 enums are open: the wire format and JSON carry any
// int32, so without this an out-of-range number would reach a converter.
// Paths use proto field names and list indexes, like the handlers' own:
// workbook.elements[0].filters[1].operator.
func undeclaredEnums(v *violations, m protoreflect.Message, prefix string) {
	m.Range(func(fd protoreflect.FieldDescriptor, val protoreflect.Value) bool {
		path := prefix + string(fd.Name())
		switch {
		case fd.IsList():
			l := val.List()
			for i := 0; i < l.Len(); i++ {
				undeclaredValue(v, fd, l.Get(i), fmt.Sprintf("%s[%d]", path, i))
			}
		case fd.IsMap():
			val.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				undeclaredValue(v, fd.MapValue(), mv, fmt.Sprintf("%s[%s]", path, k.String()))
				return true
			})
		default:
			undeclaredValue(v, fd, val, path)
		}
		return true
	})
}

func undeclaredValue(v *violations, fd protoreflect.FieldDescriptor, val protoreflect.Value, path string) {
	switch fd.Kind() {
	case protoreflect.EnumKind:
		if fd.Enum().Values().ByNumber(val.Enum()) == nil {
			v.add(path, "%d is not a value of %s (one of %s)", val.Enum(), fd.Enum().Name(), enumNames(fd.Enum()))
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		undeclaredEnums(v, val.Message(), path+".")
	}
}

// enumNames lists an enum's declared values but UNSPECIFIED.
func enumNames(ed protoreflect.EnumDescriptor) string {
	var names []string
	for i := 0; i < ed.Values().Len(); i++ {
		if ev := ed.Values().Get(i); ev.Number() != 0 {
			names = append(names, string(ev.Name()))
		}
	}
	return strings.Join(names, ", ")
}

// WarmUp walks every message the server can send or receive once —
// marshal, unmarshal and the enum check — so protobuf's lazily built
// reflection data and the reflect caches under it are built by one
// goroutine at start, not by the first concurrent requests of a fresh
// process (the race detector has reported those first-use initialisations
// racing, killing a server under GORACE=halt_on_error).
//
// Those messages are warmMessages: the API's and what they contain (the
// well-known types inside it: Struct/Value maps are where the races were),
// not every message linked into the binary — the cloud SDKs register
// hundreds of their own (envoy's xDS, Cloud Monitoring) that no request
// carries; warming them kept ~10 MiB of reflection data live and mapped
// much of the binary for nothing (docs/BENCHMARKS.md).
func WarmUp() {
	// ent stores element specs as JSON: encoding/json's per-type caches too.
	var spec elemspec.Spec
	b, _ := json.Marshal(spec)
	_ = json.Unmarshal(b, &spec)
	for _, mt := range warmMessages() {
		m := mt.New()
		populate(m, 3)
		b, _ := proto.Marshal(m.Interface())
		_ = proto.Unmarshal(b, mt.New().Interface())
		_, _ = protojson.Marshal(m.Interface())
		var v violations
		undeclaredEnums(&v, m, "")
		fields := mt.Descriptor().Fields()
		for i := 0; i < fields.Len(); i++ {
			if e := fields.Get(i).Enum(); e != nil {
				_ = enumNames(e)
			}
		}
	}
}

// warmPackages are the protobuf packages whose messages the server sends
// or receives as such: the API, gRPC's health and reflection services,
// error details, the well-known types (in google.protobuf.Any, a detail
// can be any of them) and the gateway's google.api messages.
var warmPackages = []string{"auditexport.", "grpc.health.", "grpc.reflection.", "google.rpc.", "google.protobuf.", "google.api."}

// warmMessages returns the registered messages of warmPackages and every
// message type their fields hold, transitively, each once.
func warmMessages() []protoreflect.MessageType {
	seen := map[protoreflect.FullName]bool{}
	var out []protoreflect.MessageType
	var visit func(md protoreflect.MessageDescriptor)
	visit = func(md protoreflect.MessageDescriptor) {
		if seen[md.FullName()] {
			return
		}
		seen[md.FullName()] = true
		if md.IsMapEntry() {
			// A map's entry has no type of its own: its value's is warmed.
		} else if mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName()); err == nil {
			out = append(out, mt)
		}
		fields := md.Fields()
		for i := 0; i < fields.Len(); i++ {
			if fm := fields.Get(i).Message(); fm != nil {
				visit(fm)
			}
		}
	}
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		name := string(mt.Descriptor().FullName())
		for _, p := range warmPackages {
			if strings.HasPrefix(name, p) {
				visit(mt.Descriptor())
				break
			}
		}
		return true
	})
	return out
}

// populate sets every field of m (lists and maps with one entry, nested
// messages depth levels deep, one member of each oneof), so that marshalling
// it builds the coders of every field.
func populate(m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() && m.WhichOneof(od) != nil {
			continue
		}
		isMsg := fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind
		switch {
		case fd.IsMap():
			if depth > 0 || fd.MapValue().Message() == nil {
				mp := m.Mutable(fd).Map()
				key := fd.MapKey().Default().MapKey()
				if fd.MapValue().Message() != nil {
					val := mp.NewValue()
					populate(val.Message(), depth-1)
					mp.Set(key, val)
				} else {
					mp.Set(key, scalar(fd.MapValue()))
				}
			}
		case fd.IsList():
			if !isMsg {
				m.Mutable(fd).List().Append(scalar(fd))
			} else if depth > 0 {
				l := m.Mutable(fd).List()
				val := l.NewElement()
				populate(val.Message(), depth-1)
				l.Append(val)
			}
		case isMsg:
			if depth > 0 {
				populate(m.Mutable(fd).Message(), depth-1)
			}
		default:
			m.Set(fd, scalar(fd))
		}
	}
}

// scalar is a non-default value of fd's scalar kind.
func scalar(fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(1)
	case protoreflect.StringKind:
		return protoreflect.ValueOfString("x")
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte("x"))
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(1)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(1)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(1)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(1)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(1)
	default:
		return protoreflect.ValueOfInt64(1)
	}
}

// checkRequest refuses a request that holds an undeclared enum number in
// any field, before any handler converts it. The interceptors call it for
// every request of every RPC, so a new enum field is covered without a
// handler remembering to.
func checkRequest(req any) error {
	m, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	var v violations
	undeclaredEnums(&v, m.ProtoReflect(), "")
	return v.err()
}

// enumField validates an enum request field and returns its stored form
// (PROVIDER_S3 -> S3; "" for UNSPECIFIED). UNSPECIFIED is a violation when
// required; a number the enum does not declare always is (and gives "").
func enumField(v *violations, field string, e protoreflect.Enum, prefix string, required bool) string {
	s, ok := enumDB(e, prefix)
	switch {
	case !ok:
		v.add(field, "%d is not a value of %s (one of %s)", e.Number(), e.Descriptor().Name(), enumNames(e.Descriptor()))
	case s == "" && required:
		v.add(field, "is required: one of %s", enumNames(e.Descriptor()))
	}
	return s
}

// enumOr is enumField for an optional enum whose UNSPECIFIED means def.
func enumOr(v *violations, field string, e protoreflect.Enum, prefix, def string) string {
	if s := enumField(v, field, e, prefix, false); s != "" {
		return s
	}
	return def
}
