package server_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/auditexport/auditexport/internal/destination"
	"github.com/auditexport/auditexport/internal/ownership"
)

// reasonPatterns find the ErrorInfo reasons the code can answer with.
var reasonPatterns = []*regexp.Regexp{
	regexp.MustCompile(`failedPrecondition\("([A-Z_]+)"`),
	regexp.MustCompile(`resourceExhausted\("([A-Z_]+)"`),
	regexp.MustCompile(`newStatus\(codes\.\w+, "([A-Z_]+)"`),
	regexp.MustCompile(`Reason\(\) string \{ return "([A-Z_]+)"`),
	regexp.MustCompile(`\bReason\w+\s*=\s*"([A-Z_]+)"`),
	regexp.MustCompile(`\breason :?= "([A-Z_]+)"`),
	regexp.MustCompile(`"reason":"([A-Z_]+)"`),
}

// TestErrorReasonsDocumented: every ErrorInfo reason in server/ and
// internal/ is listed in docs/api.md's "Error reasons" table, so clients
// can rely on the list.
func TestErrorReasonsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	start := strings.Index(string(doc), "## Error reasons")
	if start < 0 {
		t.Fatal(`docs/api.md has no "## Error reasons" section`)
	}
	section := string(doc[start:])
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	found := map[string]string{destination.CredentialsCode: "destination.CredentialsCode", ownership.Code: "ownership.Code"}
	for _, dir := range []string{".", "../internal"} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, re := range reasonPatterns {
				for _, m := range re.FindAllStringSubmatch(string(src), -1) {
					found[m[1]] = path
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(found) < 20 {
		t.Fatalf("found only %d reasons (%v): the patterns no longer match the code", len(found), found)
	}
	for reason, where := range found {
		if !strings.Contains(section, "`"+reason+"`") {
			t.Errorf("reason %s (%s) is not listed in docs/api.md \"Error reasons\"", reason, where)
		}
	}
}
