package apidoc

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
)

// The API reference renderer: @scalar/api-reference's standalone browser
// bundle (MIT), vendored byte for byte from the npm package by
// scripts/vendor-scalar.sh. TestScalarPinned (go test ./internal/apidoc)
// checks the bytes against ScalarSHA256: the bundle changes only with the pin.
const (
	ScalarVersion = "1.76.4"
	// ScalarSHA256 is the SHA-256 of dist/browser/standalone.js in
	// @scalar/api-reference@1.76.4 (npm integrity sha512-bHSVv494yuNTcBzmfZR3eYhckOTiu3L6IJmvM2kdKzBVmWqm+JhEHbYc7ydsv7FBSs3vTW9sCz00La2dFgWxVg==).
	ScalarSHA256 = "93951f1794b0463b87ab58d0557a6610075af79a9f94c2a3f261c993bc7f3913"
)

//go:embed scalar/standalone.js
var scalarJS []byte

// scalarPath is the bundle's URL: versioned, so browsers may cache it for good.
const scalarPath = "/docs/scalar-" + ScalarVersion + ".js"

// ContentSecurityPolicy of the /docs page: scripts only from this server (the
// bundle and docs/init.js; no inline script, no eval), requests (the
// document and "try it") only to this server, and no fonts, images or
// frames from elsewhere. Styles may be inline: the bundle injects its
// stylesheet as a <style> element and sets style attributes.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// The page and its start script. URLs are relative to /docs ("openapi.json"
// is /openapi.json).
const docsHTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>auditexport API reference</title>
</head>
<body>
<noscript>This page needs JavaScript. The OpenAPI document is at <a href="openapi.json">openapi.json</a>.</noscript>
<div id="app"></div>
<script src="docs/scalar-` + ScalarVersion + `.js"></script>
<script src="docs/init.js"></script>
</body>
</html>
`

// The options keep the page self-contained: no web fonts, telemetry, AI
// agent, MCP or request proxy (all hosted elsewhere); "try it" calls this
// server directly with the key entered under Authentication (kept in
// memory only: persistAuth false). servers: the document's relative "/"
// would make Scalar request "//v1/..." (it appends the path to the
// resolved "http://host/"), so the page names its own origin.
const initJS = `// Starts the API reference (Scalar ` + ScalarVersion + `) over this server's OpenAPI document.
Scalar.createApiReference("#app", {
  url: "openapi.json",
  servers: [{ url: window.location.origin, description: "This server" }],
  withDefaultFonts: false,
  telemetry: false,
  proxyUrl: "",
  agent: { disabled: true },
  mcp: { disabled: true },
  showDeveloperTools: "never",
  showOperationId: true,
  defaultOpenAllTags: true,
  persistAuth: false,
  documentDownloadType: "json",
  authentication: { preferredSecurityScheme: "` + SecurityScheme + `" },
});
`

// Handler serves GET /openapi.json (spec with info.version set to version),
// GET /docs and the page's scripts under /docs/.
func Handler(spec []byte, version string) (http.Handler, error) {
	doc, err := Document(spec, version)
	if err != nil {
		return nil, err
	}
	// Compressed on first use (~1.4 MB instead of 4.9), not at every start.
	var gzOnce sync.Once
	var gz []byte
	gzipped := func() []byte {
		gzOnce.Do(func() {
			var b bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
			_, _ = zw.Write(scalarJS)
			if zw.Close() == nil {
				gz = b.Bytes()
			}
		})
		return gz
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(doc)
	})
	mux.HandleFunc("GET /docs", func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		_, _ = w.Write([]byte(docsHTML))
	})
	mux.HandleFunc("GET /docs/init.js", func(w http.ResponseWriter, _ *http.Request) {
		script(w, "no-cache")
		_, _ = w.Write([]byte(initJS))
	})
	mux.HandleFunc("GET "+scalarPath, func(w http.ResponseWriter, r *http.Request) {
		script(w, "public, max-age=31536000, immutable")
		w.Header().Add("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header.Get("Accept-Encoding")) {
			if b := gzipped(); b != nil {
				w.Header().Set("Content-Encoding", "gzip")
				_, _ = w.Write(b)
				return
			}
		}
		_, _ = w.Write(scalarJS)
	})
	return mux, nil
}

func script(w http.ResponseWriter, cache string) {
	h := w.Header()
	h.Set("Content-Type", "text/javascript; charset=utf-8")
	h.Set("Cache-Control", cache)
	h.Set("X-Content-Type-Options", "nosniff")
}

func acceptsGzip(ae string) bool {
	for _, part := range strings.Split(ae, ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") {
			return strings.ReplaceAll(strings.TrimSpace(params), " ", "") != "q=0"
		}
	}
	return false
}

// Document returns spec with info.version set to version (when not empty).
func Document(spec []byte, version string) ([]byte, error) {
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(spec))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("apidoc: parse OpenAPI document: %w", err)
	}
	info, ok := doc["info"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("apidoc: OpenAPI document has no info")
	}
	if version != "" {
		info["version"] = version
	}
	return encode(doc)
}
