package destination

import (
	"reflect"

	raw "google.golang.org/api/storage/v1"
)

// gcsConditionSetters are the methods cloud.google.com/go/storage calls by
// reflection (applyConds, applySourceConds: MethodByName(name).Call) to put
// preconditions on a request.
var gcsConditionSetters = []string{"Generation", "IfGenerationMatch", "IfGenerationNotMatch",
	"IfMetagenerationMatch", "IfMetagenerationNotMatch", "SourceGeneration", "IfSourceGenerationMatch",
	"IfSourceGenerationNotMatch", "IfSourceMetagenerationMatch", "IfSourceMetagenerationNotMatch"}

// init calls each of those setters once, on a call value that is never
// sent, so that reflect's lazily built caches for them (the method types,
// and the call frame layout reflect.Value.Call computes on a method's first
// call) exist before two uploads run at once. Under the race detector their
// first concurrent use by two uploads (an object and a manifest, or two
// runs) was reported as a race inside reflect (FuncOf, then
// funcLayout/abiSeq on the first conditional upload of each kind) and
// killed the -race server (TestVerifiableExports, TestSendNowProviders).
func init() { warmGCSConditions() }

// warmGCSConditions returns how many setters it called (the test checks
// that the list still matches the API's call types).
func warmGCSConditions() int {
	objects := &raw.ObjectsService{}
	calls := []any{
		objects.Insert("b", &raw.Object{}), objects.Get("b", "o"), objects.Delete("b", "o"),
		objects.Patch("b", "o", &raw.Object{}), objects.Update("b", "o", &raw.Object{}),
		objects.Rewrite("b", "o", "b", "o", &raw.Object{}), objects.Copy("b", "o", "b", "o", &raw.Object{}),
		objects.Compose("b", "o", &raw.ComposeRequest{}), objects.List("b"),
	}
	called := 0
	for _, c := range calls {
		v := reflect.ValueOf(c)
		for _, name := range gcsConditionSetters {
			m := v.MethodByName(name)
			if !m.IsValid() || m.Type().NumIn() != 1 || m.Type().In(0).Kind() != reflect.Int64 {
				continue
			}
			m.Call([]reflect.Value{reflect.ValueOf(int64(1))})
			called++
		}
	}
	return called
}
