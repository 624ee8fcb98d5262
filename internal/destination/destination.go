// Package destination parses and checks where exports are written: an
// integration's base location, a schedule's object URI (with its template
// tokens), the object's file extension, and an integration's custom endpoint.
//
// Everything here runs on user input before any credential is used, so the
// rules are deliberately strict: a URI that could be read two ways (percent
// escapes, dot segments, empty segments, backslashes) is refused rather than
// normalised, so that "lies under the integration's destination" means the
// same thing to this package and to every storage backend.
package destination

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Provider is a storage provider, spelt as in the API without its enum prefix.
type Provider string

// Supported providers.
const (
	S3        Provider = "S3"
	GCS       Provider = "GCS"
	AzureBlob Provider = "AZURE_BLOB"
	Local     Provider = "LOCAL"
)

// ErrInvalid matches (errors.Is) every validation error of this package.
var ErrInvalid = errors.New("invalid destination")

// Error is a validation failure. Msg is written to follow a field name in a
// BadRequest field violation, so it carries no prefix of its own.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

// Is lets callers tell user mistakes (INVALID_ARGUMENT) from internal faults.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

func invalid(format string, args ...any) error {
	return &Error{Msg: fmt.Sprintf(format, args...)}
}

// maxURILen matches the S3 key limit, the smallest of the providers'.
const maxURILen = 1024

const azureHostSuffix = ".blob.core.windows.net"

// Location is a parsed storage location (an integration's base destination or an object URI).
type Location struct {
	Provider Provider
	Scheme   string // canonical scheme: "s3", "gcs", "azure", "file"
	Account  string // Azure storage account (from <account>.blob.core.windows.net), else ""
	Bucket   string // S3/GCS bucket, Azure container, "" for LOCAL
	Path     string // key/prefix within the bucket (no leading slash); for LOCAL the absolute path
}

// String renders the canonical URI; gs:// input comes back as gcs://.
func (l Location) String() string {
	switch l.Scheme {
	case "file":
		return "file://" + l.Path
	case "azure":
		return "azure://" + l.Account + azureHostSuffix + "/" + l.Bucket + "/" + l.Path
	default:
		return l.Scheme + "://" + l.Bucket + "/" + l.Path
	}
}

// ParseDestination validates an integration's base destination for the
// provider and returns it normalised: a non-empty prefix always ends in "/".
func ParseDestination(p Provider, uri string) (Location, error) {
	if strings.ContainsAny(uri, "{}") {
		return Location{}, invalid("must not contain template tokens ({...}); tokens belong in the schedule's uri")
	}
	loc, err := parse(p, uri)
	if err != nil {
		return Location{}, err
	}
	if loc.Path != "" && !strings.HasSuffix(loc.Path, "/") {
		loc.Path += "/"
	}
	if err := checkSegments(loc.segmentPath()); err != nil {
		return Location{}, err
	}
	if loc.Provider == Local && loc.Path == "/" {
		// The whole filesystem is never a sensible export target and makes
		// the "under the destination" guard meaningless.
		return Location{}, invalid("must name a directory below the filesystem root, e.g. file:///var/exports/")
	}
	return loc, nil
}

// segmentPath is the part of Path subject to the segment rules; LOCAL paths
// carry their leading "/" which is not an empty segment.
func (l Location) segmentPath() string {
	if l.Provider == Local {
		return strings.TrimPrefix(l.Path, "/")
	}
	return l.Path
}

// normProvider tolerates the proto enum spelling so callers can pass either.
func normProvider(p Provider) Provider {
	return Provider(strings.TrimPrefix(strings.ToUpper(string(p)), "PROVIDER_"))
}

func wantSchemes(p Provider) string {
	switch p {
	case S3:
		return "s3://"
	case GCS:
		return "gcs:// or gs://"
	case AzureBlob:
		return "azure://"
	default:
		return "file://"
	}
}

func canonicalScheme(p Provider, scheme string) (string, bool) {
	switch {
	case p == S3 && scheme == "s3":
		return "s3", true
	case p == GCS && (scheme == "gcs" || scheme == "gs"):
		return "gcs", true
	case p == AzureBlob && scheme == "azure":
		return "azure", true
	case p == Local && scheme == "file":
		return "file", true
	}
	return "", false
}

// parse splits a URI into a Location and checks everything except the
// path-segment rules, which differ between base destinations and objects.
func parse(p Provider, uri string) (Location, error) {
	p = normProvider(p)
	switch p {
	case S3, GCS, AzureBlob, Local:
	default:
		return Location{}, invalid("unknown provider %q (want S3, GCS, AZURE_BLOB or LOCAL)", string(p))
	}
	if err := checkChars(uri); err != nil {
		return Location{}, err
	}
	i := strings.Index(uri, "://")
	if i <= 0 {
		return Location{}, invalid("must be a URI like %s", example(p))
	}
	scheme := strings.ToLower(uri[:i])
	canon, ok := canonicalScheme(p, scheme)
	if !ok {
		return Location{}, invalid("scheme %q does not match provider %s (want %s)", scheme, p, wantSchemes(p))
	}
	authority, path, _ := strings.Cut(uri[i+3:], "/")
	loc := Location{Provider: p, Scheme: canon}
	switch p {
	case Local:
		if authority != "" {
			return Location{}, invalid("must be an absolute path with an empty host, like file:///var/exports/ (got host %q)", authority)
		}
		loc.Path = "/" + path
	case AzureBlob:
		host := strings.ToLower(authority)
		account, ok := strings.CutSuffix(host, azureHostSuffix)
		if !ok {
			return Location{}, invalid("host must be <account>%s, like %s (custom hosts and emulators go in the integration's endpoint)", azureHostSuffix, example(p))
		}
		if !validAzureAccount(account) {
			return Location{}, invalid("storage account %q is not valid (3-24 lowercase letters and digits)", account)
		}
		container, rest, _ := strings.Cut(path, "/")
		if container == "" {
			return Location{}, invalid("must name a container, like %s", example(p))
		}
		if !validAzureContainer(container) {
			return Location{}, invalid("container %q is not valid (3-63 lowercase letters, digits and single hyphens, starting and ending with a letter or digit)", container)
		}
		loc.Account, loc.Bucket, loc.Path = account, container, rest
	case S3, GCS:
		if authority == "" {
			return Location{}, invalid("must name a bucket, like %s", example(p))
		}
		if p == S3 && !validS3Bucket(authority) {
			return Location{}, invalid("bucket %q is not a valid S3 bucket name (3-63 lowercase letters, digits, \".\" and \"-\", starting and ending with a letter or digit)", authority)
		}
		if p == GCS && !validGCSBucket(authority) {
			return Location{}, invalid("bucket %q is not a valid GCS bucket name (3-63 lowercase letters, digits, \".\", \"-\" and \"_\", starting and ending with a letter or digit)", authority)
		}
		loc.Bucket, loc.Path = authority, path
	}
	return loc, nil
}

func example(p Provider) string {
	switch p {
	case S3:
		return "s3://bucket/prefix/"
	case GCS:
		return "gcs://bucket/prefix/"
	case AzureBlob:
		return "azure://account" + azureHostSuffix + "/container/prefix/"
	default:
		return "file:///var/exports/"
	}
}

// checkChars refuses characters whose meaning differs between URL parsers,
// shells and storage backends, so no backend can see a different path.
func checkChars(uri string) error {
	switch {
	case uri == "":
		return invalid("must not be empty")
	case len(uri) > maxURILen:
		return invalid("must be at most %d bytes long (got %d)", maxURILen, len(uri))
	case !utf8.ValidString(uri):
		return invalid("must be valid UTF-8")
	case strings.ContainsAny(uri, "?#"):
		return invalid("must not contain a query string or fragment (\"?\" or \"#\")")
	case strings.Contains(uri, `\`):
		return invalid("must not contain backslashes")
	case strings.Contains(uri, "%"):
		// Escapes such as %2e%2e or %2f would be decoded by some backends
		// and not others; object keys are taken literally, so none are needed.
		return invalid("must not contain percent-encoding (\"%%\"); write characters literally")
	}
	for _, r := range uri {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return invalid("must not contain control characters")
		}
	}
	return nil
}

// checkSegments applies the traversal rules to a key path (no leading "/").
// A trailing "/" is allowed here; callers decide whether a directory is wanted.
func checkSegments(path string) error {
	if path == "" {
		return nil
	}
	segs := strings.Split(strings.TrimSuffix(path, "/"), "/")
	for _, s := range segs {
		switch strings.TrimSpace(s) {
		case "":
			return invalid("must not contain empty path segments (\"//\")")
		case "..":
			return invalid("must not contain \"..\" segments")
		case ".":
			return invalid("must not contain \".\" segments")
		}
	}
	return nil
}

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

func allBytes(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

// bucketShape holds the rules S3 and GCS share.
func bucketShape(b, extra string) bool {
	if len(b) < 3 || len(b) > 63 || !isLowerAlnum(b[0]) || !isLowerAlnum(b[len(b)-1]) {
		return false
	}
	if !allBytes(b, func(c byte) bool { return isLowerAlnum(c) || strings.IndexByte(extra, c) >= 0 }) {
		return false
	}
	if strings.Contains(b, "..") {
		return false
	}
	// Both providers refuse IP-address-shaped names.
	if a, err := netip.ParseAddr(b); err == nil && a.Is4() {
		return false
	}
	return true
}

func validS3Bucket(b string) bool {
	if !bucketShape(b, ".-") {
		return false
	}
	for _, pre := range []string{"xn--", "sthree-", "amzn-s3-demo-"} {
		if strings.HasPrefix(b, pre) {
			return false
		}
	}
	for _, suf := range []string{"-s3alias", "--ol-s3", ".mrap", "--x-s3"} {
		if strings.HasSuffix(b, suf) {
			return false
		}
	}
	return true
}

func validGCSBucket(b string) bool {
	return bucketShape(b, ".-_") && !strings.HasPrefix(b, "goog") && !strings.Contains(b, "google")
}

func validAzureAccount(a string) bool {
	return len(a) >= 3 && len(a) <= 24 && allBytes(a, isLowerAlnum)
}

func validAzureContainer(c string) bool {
	return len(c) >= 3 && len(c) <= 63 && isLowerAlnum(c[0]) && isLowerAlnum(c[len(c)-1]) &&
		allBytes(c, func(b byte) bool { return isLowerAlnum(b) || b == '-' }) && !strings.Contains(c, "--")
}
