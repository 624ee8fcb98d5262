package server

import (
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/fieldmaskpb"
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
