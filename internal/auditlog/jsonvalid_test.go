package auditlog

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

// jsonSeeds are valid and invalid JSON texts near every branch of the
// grammar; the tests below also mutate them byte by byte.
var jsonSeeds = []string{
	``, ` `, `{}`, `[]`, ` {"a":1} `, `{"a":[1,2,{"b":null}],"c":"d"}`, `"x"`, `"\u00e9\n\"\\\/\b\f\r\t"`, `"\u12"`, `"\x"`,
	"\"a\x01b\"", "\"a\x7fb\"", "\"\xff\xfe\"", `0`, `-0`, `01`, `-`, `1.`, `1.5`, `1e`, `1e+`, `1E-7`, `-12.5e10`, `.5`, `+1`,
	`true`, `false`, `null`, `tru`, `nul`, `truex`, `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`, `[,1]`, `{,}`, `{"a" : 1 , "b" : [ ] }`,
	`[1 2]`, `{"a":1 "b":2}`, `{1:2}`, `"unterminated`, `[`, `{`, `]`, `}`, `1 2`, "\t\r\n[\t1\r]\n", `{"a":{"b":{"c":[[[]]]}}}`,
	`{"method":"CreateSchedule","request":{"name":"x","cron":"0 * * * *"},"ip":"10.0.0.1"}`,
}

func checkSameAsJSONValid(t *testing.T, b []byte) {
	t.Helper()
	if got, want := validJSON(b), json.Valid(b); got != want {
		t.Fatalf("validJSON(%q) = %v, json.Valid %v", b, got, want)
	}
}

// TestValidJSONAsEncodingJSON: validJSON agrees with encoding/json.Valid on
// the seeds, on ~200k byte-level mutations of them, and at the nesting
// limit.
func TestValidJSONAsEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	alphabet := []byte("{}[]:,\"\\/ubfnrt0123456789.-+eEaxlsn \t\r\n\x00\x1f\x80")
	for _, s := range jsonSeeds {
		checkSameAsJSONValid(t, []byte(s))
		for range 4000 {
			b := []byte(s)
			for k := 1 + r.IntN(3); k > 0; k-- {
				switch op := r.IntN(3); {
				case op == 0 && len(b) > 0:
					b[r.IntN(len(b))] = alphabet[r.IntN(len(alphabet))]
				case op == 1:
					i := r.IntN(len(b) + 1)
					b = append(b[:i], append([]byte{alphabet[r.IntN(len(alphabet))]}, b[i:]...)...)
				case len(b) > 0:
					i := r.IntN(len(b))
					b = append(b[:i], b[i+1:]...)
				}
			}
			checkSameAsJSONValid(t, b)
		}
	}
	for _, depth := range []int{jsonMaxDepth - 1, jsonMaxDepth, jsonMaxDepth + 1} {
		checkSameAsJSONValid(t, []byte(strings.Repeat("[", depth)+strings.Repeat("]", depth)))
		checkSameAsJSONValid(t, []byte(strings.Repeat(`{"a":`, depth)+"1"+strings.Repeat("}", depth)))
	}
}

// FuzzValidJSON: `go test -fuzz FuzzValidJSON ./internal/auditlog/` looks
// for a text on which validJSON and encoding/json.Valid disagree.
func FuzzValidJSON(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkSameAsJSONValid)
}

// BenchmarkValidJSON: validJSON against encoding/json.Valid on a METADATA
// value as Seed writes them.
func BenchmarkValidJSON(b *testing.B) {
	v := []byte(`{"method":"/auditexport.v1.ScheduleService/UpdateSchedule","request":{"id":"sch_01jd8m2k3n4p5q6r7s8t9v0w1x","name":"nightly export","cron":"0 2 * * *","notify":["oncall@example.com"]},"status":"OK","duration_ms":12}`)
	for _, f := range []struct {
		name string
		fn   func([]byte) bool
	}{{"validJSON", validJSON}, {"encoding-json", json.Valid}} {
		b.Run(f.name, func(b *testing.B) {
			b.SetBytes(int64(len(v)))
			for b.Loop() {
				if !f.fn(v) {
					b.Fatal("invalid")
				}
			}
		})
	}
}
