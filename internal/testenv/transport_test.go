package testenv_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoDefaultHTTPTransport fails when test code (any _test.go file, and
// this package) sends a request through http.DefaultTransport: directly,
// through http.DefaultClient or http.Get/Head/Post/PostForm, or through an
// http.Client literal without a Transport. httptest.Server.Close closes that
// transport's idle connections, so a parallel test's request through it can
// be cut inside the test process (see testenv.HTTP). Cloning it
// (http.DefaultTransport.(*http.Transport).Clone()) is the allowed use.
func TestNoDefaultHTTPTransport(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			switch {
			case rel != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules" || d.Name() == "testdata"),
				rel == "web", rel == "gen", rel == "ent":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || !(strings.HasSuffix(path, "_test.go") || filepath.Dir(rel) == filepath.Join("internal", "testenv")) {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		checked++
		for _, bad := range defaultTransportUses(f) {
			t.Errorf("%s: %s goes through http.DefaultTransport; use testenv.HTTP or a transport of the test's own", fset.Position(bad.Pos()), bad.what)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("checked %d files under %s: the walk missed the test code", checked, root)
	}
}

type badUse struct {
	ast.Node
	what string
}

// defaultTransportUses lists the uses of http.DefaultTransport in f other
// than cloning it. The package name is read from the imports (an alias of
// net/http is followed).
func defaultTransportUses(f *ast.File) []badUse {
	name := ""
	for _, imp := range f.Imports {
		if imp.Path.Value == `"net/http"` {
			name = "http"
			if imp.Name != nil {
				name = imp.Name.Name
			}
		}
	}
	if name == "" {
		return nil
	}
	isHTTP := func(e ast.Expr, sel ...string) bool {
		s, ok := e.(*ast.SelectorExpr)
		if !ok {
			return false
		}
		if x, ok := s.X.(*ast.Ident); !ok || x.Name != name {
			return false
		}
		for _, n := range sel {
			if s.Sel.Name == n {
				return true
			}
		}
		return false
	}
	var out []badUse
	clones := map[ast.Expr]bool{} // http.DefaultTransport inside ….(*http.Transport).Clone()
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			if s, ok := n.Fun.(*ast.SelectorExpr); ok && s.Sel.Name == "Clone" {
				if ta, ok := s.X.(*ast.TypeAssertExpr); ok && isHTTP(ta.X, "DefaultTransport") {
					clones[ta.X] = true
				}
			}
			if isHTTP(n.Fun, "Get", "Head", "Post", "PostForm") {
				out = append(out, badUse{n, "http." + n.Fun.(*ast.SelectorExpr).Sel.Name})
			}
		case *ast.SelectorExpr:
			if isHTTP(n, "DefaultClient") {
				out = append(out, badUse{n, "http.DefaultClient"})
			}
			if isHTTP(n, "DefaultTransport") && !clones[n] {
				out = append(out, badUse{n, "http.DefaultTransport"})
			}
		case *ast.CompositeLit:
			if isHTTP(n.Type, "Client") {
				withTransport := false
				for _, el := range n.Elts {
					if kv, ok := el.(*ast.KeyValueExpr); ok {
						if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Transport" {
							withTransport = true
						}
					}
				}
				if !withTransport {
					out = append(out, badUse{n, "an http.Client without a Transport"})
				}
			}
		}
		return true
	})
	return out
}
