package notify_test

import (
	"slices"
	"testing"

	"github.com/auditexport/auditexport/internal/notify"
)

func TestAllowed(t *testing.T) {
	members := map[string]bool{"ann@corp.example": true}
	domains := []string{"@partner.example", " ops.example "}
	for addr, want := range map[string]bool{
		"ann@corp.example":        true,
		" ANN@corp.example ":      true,
		"bob@corp.example":        false,
		"x@partner.example":       true,
		"x@PARTNER.example":       true,
		"x@ops.example":           true,
		"x@evil.partner.example":  false,
		"x@partner.example.evil":  false,
		"no-at-sign":              false,
		"x@partner.example@evil.": false,
	} {
		if got := notify.Allowed(addr, members, domains); got != want {
			t.Errorf("Allowed(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestPeopleAll(t *testing.T) {
	p := notify.People{Owner: "Ann@corp.example", Notify: []string{"ann@corp.example", "x@partner.example", " X@partner.example"}}
	if got, want := p.All(), []string{"Ann@corp.example", "x@partner.example"}; !slices.Equal(got, want) {
		t.Errorf("All() = %v, want %v", got, want)
	}
	if got := (notify.People{Notify: []string{"x@partner.example"}}).All(); !slices.Equal(got, []string{"x@partner.example"}) {
		t.Errorf("without an owner: %v", got)
	}
}
