package destination

import (
	"reflect"

	raw "google.golang.org/api/storage/v1"
)

// init builds reflect's method-type cache for the GCS call types the
// storage client inspects by reflection on every conditional request
// (cloud.google.com/go/storage's applyConds calls MethodByName): under the
// race detector their first concurrent use by two uploads (an object and a
// manifest, or two runs) was reported as a race inside reflect.FuncOf and
// killed the -race server.
func init() {
	for _, c := range []any{new(raw.ObjectsInsertCall), new(raw.ObjectsGetCall), new(raw.ObjectsDeleteCall),
		new(raw.ObjectsPatchCall), new(raw.ObjectsRewriteCall), new(raw.ObjectsComposeCall), new(raw.ObjectsListCall)} {
		t := reflect.TypeOf(c)
		for i := range t.NumMethod() {
			_ = t.Method(i)
		}
	}
}
