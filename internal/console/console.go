// Package console serves the web console: the single-page app built from
// web/console (TypeScript, bundled by esbuild with the pinned toolchain of
// web/console/package-lock.json) into dist/, committed and embedded here, so
// `auditexport serve` serves it with no build step. The integration test
// TestConsoleBuildFresh rebuilds it and fails when dist/ is stale.
package console

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed all:dist
var dist embed.FS

// ContentSecurityPolicy of every console response: scripts, styles, images
// and API calls from this server only; no inline script or style, no eval,
// no frames, no form posts elsewhere, and nobody may frame the console.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// reserved are the server's own paths: the console never answers them (nor
// anything under them), so a client-side route can never shadow the API,
// the API reference, health, readiness or metrics.
var reserved = []string{"/v1", "/docs", "/openapi.json", "/healthz", "/readyz", "/metrics"}

// Reserved reports whether p is one of the server's own paths or under one.
func Reserved(p string) bool {
	for _, r := range reserved {
		if p == r || strings.HasPrefix(p, r+"/") {
			return true
		}
	}
	return false
}

// Handler serves the console: GET/HEAD of /assets/<hashed name> (cached for a
// year, immutable), and index.html (no-cache) for / and every other path
// that is not a file of dist/ and not reserved (the client-side routes:
// history fallback). Other methods get 405, reserved paths 404.
func Handler() http.Handler {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err)
	}
	index, err := fs.ReadFile(sub, "index.html")
	if err != nil {
		panic("console: dist/index.html missing: " + err.Error())
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		p := path.Clean("/" + r.URL.Path)
		if Reserved(p) {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if strings.HasPrefix(p, "/assets/") {
			b, err := fs.ReadFile(sub, strings.TrimPrefix(p, "/"))
			if err != nil {
				http.NotFound(w, r)
				return
			}
			switch path.Ext(p) {
			case ".js":
				h.Set("Content-Type", "text/javascript; charset=utf-8")
			case ".css":
				h.Set("Content-Type", "text/css; charset=utf-8")
			case ".svg":
				h.Set("Content-Type", "image/svg+xml")
			default:
				h.Set("Content-Type", "application/octet-stream")
			}
			// The names carry a hash of the content (esbuild [hash]).
			h.Set("Cache-Control", "public, max-age=31536000, immutable")
			_, _ = w.Write(b)
			return
		}
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		_, _ = w.Write(index)
	})
}
