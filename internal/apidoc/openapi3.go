// Package apidoc turns the gateway's generated Swagger 2.0 document into the
// OpenAPI 3.1 document the server serves at /openapi.json, and serves the
// API reference page at /docs.
//
// Convert runs at `make generate` (internal/apidoc/openapi3gen): its output,
// gen/openapi/auditexport.openapi.json, is committed like the rest of gen/.
// Besides the mechanical 2.0 -> 3.1 conversion it adds what
// protoc-gen-openapiv2 cannot know: the info block, the bearer API-key
// security scheme, unique path templates, the error responses of every
// operation and examples for the main requests.
package apidoc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

type obj = map[string]any

// DevVersion is info.version in the committed document; the server replaces
// it with its build's version when it serves the document (Document).
const DevVersion = "0.0.0-dev"

// SecurityScheme is the name of the bearer API-key scheme.
const SecurityScheme = "apiKey"

// Convert converts the Swagger 2.0 document swagger (protoc-gen-openapiv2's
// merged output) into the served OpenAPI 3.1 document. The output is
// deterministic: objects are written with sorted keys.
func Convert(swagger []byte) ([]byte, error) {
	var sw obj
	dec := json.NewDecoder(bytes.NewReader(swagger))
	dec.UseNumber()
	if err := dec.Decode(&sw); err != nil {
		return nil, fmt.Errorf("parse swagger: %w", err)
	}
	if sw["swagger"] != "2.0" {
		return nil, fmt.Errorf("not a Swagger 2.0 document (swagger=%v)", sw["swagger"])
	}
	defs, _ := sw["definitions"].(obj)
	schemas := obj{}
	for name, s := range defs {
		schemas[name] = convSchema(s)
	}
	for name, s := range errorSchemas() {
		schemas[name] = s
	}
	swPaths, _ := sw["paths"].(obj)
	paths := obj{}
	for _, p := range sortedKeys(swPaths) {
		item, _ := swPaths[p].(obj)
		np, renames := uniquePath(p)
		out, _ := paths[np].(obj)
		if out == nil {
			out = obj{}
			paths[np] = out
		}
		for _, method := range sortedKeys(item) {
			op, ok := item[method].(obj)
			if !ok {
				return nil, fmt.Errorf("%s: %s is not an operation", p, method)
			}
			if _, dup := out[method]; dup {
				return nil, fmt.Errorf("%s %s: renaming the path parameters to %s collides with another operation", method, p, np)
			}
			cop, err := convOperation(method, op, renames)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", method, p, err)
			}
			out[method] = cop
		}
	}
	tags, _ := sw["tags"].([]any)
	responses := errorResponses()
	pruneSchemas(schemas, paths, responses)
	doc := obj{
		"openapi":           "3.1.0",
		"jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
		"info":              info(),
		"servers":           []any{obj{"url": "/", "description": "The server that serves this document (its HTTP listener, --http-addr)."}},
		"tags":              tags,
		"security":          []any{obj{SecurityScheme: []any{}}},
		"paths":             paths,
		"components": obj{
			"schemas":   schemas,
			"responses": responses,
			"securitySchemes": obj{SecurityScheme: obj{
				"type":         "http",
				"scheme":       "bearer",
				"bearerFormat": "API key",
				"description": "An API key, sent as `Authorization: Bearer <key>` (the same key works as gRPC " +
					"metadata). The first start prints a bootstrap ADMIN key; `CreateApiKey` (`POST /v1/apiKeys`) " +
					"makes more. A missing, unknown, revoked or expired key is UNAUTHENTICATED (401); repeated " +
					"failures from one client are rate limited (429, reason AUTH_FAILURE_RATE_LIMITED, with RetryInfo).",
			}},
		},
	}
	return encode(doc)
}

// encode writes a document as the committed file is written: keys sorted,
// two-space indent, no HTML escaping, a final newline.
func encode(doc any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func info() obj {
	return obj{
		"title":   "auditexport API",
		"version": DevVersion,
		"summary": "Scheduled exports of audit-log workbook elements to cloud storage.",
		"description": "REST/JSON gateway of the auditexport gRPC services (`auditexport.v1`): storage " +
			"integrations, workbooks over the audit-log connections, export schedules and their runs, users " +
			"and API keys.\n\n" +
			"**Authentication.** Every `/v1/` call needs an API key: `Authorization: Bearer <key>`. " +
			"`/healthz`, `/readyz`, `/metrics`, `/openapi.json` and `/docs` need none.\n\n" +
			"**JSON.** Fields are lowerCamelCase (protobuf JSON mapping); enums are their names; " +
			"64-bit integers are strings; durations are strings such as `\"604800s\"`; timestamps are RFC 3339. " +
			"`PATCH` takes the resource as the body and a required `updateMask` query parameter naming the " +
			"fields to change.\n\n" +
			"**Errors** are `google.rpc.Status` objects (`code`, `message`, `details`). Every error carries a " +
			"`google.rpc.ErrorInfo` detail (domain `auditexport`) whose `reason` clients may switch on; invalid " +
			"input adds a `google.rpc.BadRequest` with field violations, rate limits a `google.rpc.RetryInfo`. " +
			"HTTP statuses follow grpc-gateway's mapping of gRPC codes: notably FAILED_PRECONDITION is **400** " +
			"(not 412), ALREADY_EXISTS and ABORTED are 409, RESOURCE_EXHAUSTED is 429.\n\n" +
			"**Streams.** `:sendNow` and `:watch` answer with newline-delimited JSON: one object per progress " +
			"message, each `{\"result\": {...}}`, or `{\"error\": Status}` if the stream fails after it started.\n\n" +
			"The API reference page is served at `/docs`; gRPC clients can use server reflection instead.",
		"license": obj{
			"name":       "Proprietary: no license is granted",
			"identifier": "LicenseRef-Proprietary",
		},
	}
}

// uniquePath renames the path parameters that name a field of the body's
// resource ({schedule.id}) to the name the other operations on the same
// resource use ({id}): /v1/schedules/{schedule.id} (UpdateSchedule) and
// /v1/schedules/{id} (GetSchedule) are one path template. The REST routes
// don't change: a template matches the same URLs whatever its parameters
// are called. renames maps old parameter names to new ones.
func uniquePath(p string) (string, map[string]string) {
	renames := map[string]string{}
	np := pathParam.ReplaceAllStringFunc(p, func(m string) string {
		name := m[1 : len(m)-1]
		if i := strings.LastIndexByte(name, '.'); i >= 0 {
			renames[name] = name[i+1:]
			return "{" + name[i+1:] + "}"
		}
		return m
	})
	return np, renames
}

var pathParam = regexp.MustCompile(`\{[^}]+\}`)

func convOperation(method string, op obj, renames map[string]string) (obj, error) {
	out := obj{}
	for _, k := range []string{"operationId", "tags", "deprecated"} {
		if v, ok := op[k]; ok {
			out[k] = v
		}
	}
	id, _ := op["operationId"].(string)
	summary, description := summarize(id, str(op["summary"]), str(op["description"]))
	out["summary"] = summary
	if description != "" {
		out["description"] = description
	}
	var params []any
	swParams, _ := op["parameters"].([]any)
	for _, p := range swParams {
		p, _ := p.(obj)
		if p["in"] == "body" {
			rb := obj{
				"required": true,
				"content": obj{"application/json": withExamples(id, obj{
					"schema": convSchema(p["schema"]),
				})},
			}
			if d := str(p["description"]); d != "" {
				rb["description"] = d
			}
			out["requestBody"] = rb
			continue
		}
		cp, err := convParam(p, renames)
		if err != nil {
			return nil, err
		}
		params = append(params, cp)
	}
	if len(params) > 0 {
		out["parameters"] = params
	}
	responses := obj{}
	swResp, _ := op["responses"].(obj)
	for code, r := range swResp {
		if code == "default" {
			continue // replaced by the documented error responses below
		}
		r, _ := r.(obj)
		cr := obj{"description": str(r["description"])}
		if s, ok := r["schema"]; ok {
			schema := convSchema(s).(obj)
			media := obj{"schema": schema}
			if strings.HasPrefix(str(schema["title"]), "Stream result of ") {
				cr["description"] = "A stream of newline-delimited JSON objects (one line per message of the " +
					"gRPC server stream): `{\"result\": ...}` for each message, `{\"error\": Status}` if the " +
					"stream fails after it started. The HTTP status is 200 once the stream started."
			}
			cr["content"] = obj{"application/json": media}
		}
		responses[code] = cr
	}
	for _, e := range errorsFor(method) {
		responses[e.code] = obj{"$ref": "#/components/responses/" + e.name}
	}
	out["responses"] = responses
	return out, nil
}

func convParam(p obj, renames map[string]string) (obj, error) {
	name := str(p["name"])
	in := str(p["in"])
	out := obj{"name": name, "in": in}
	if in == "path" {
		out["required"] = true
		if nn, ok := renames[name]; ok {
			out["name"] = nn
			res := name[:strings.LastIndexByte(name, '.')]
			p["description"] = strings.TrimSpace(fmt.Sprintf("The %s's `%s` (the body's `%s` is taken from the path). %s",
				res, nn, nn, str(p["description"])))
		}
	} else if r, ok := p["required"].(bool); ok && r {
		out["required"] = true
	}
	if d := str(p["description"]); d != "" {
		out["description"] = d
	}
	schema := obj{}
	for k, v := range p {
		switch k {
		case "name", "in", "required", "description":
		case "collectionFormat":
			switch v {
			case "multi":
				out["style"], out["explode"] = "form", true
			case "csv":
				out["style"], out["explode"] = "form", false
			default:
				return nil, fmt.Errorf("parameter %s: collectionFormat %v not supported", name, v)
			}
		case "items":
			schema[k] = convSchema(v)
		default:
			if strings.HasPrefix(k, "x-") {
				out[k] = v
				continue
			}
			schema[k] = v
		}
	}
	out["schema"] = schema
	return out, nil
}

// convSchema converts a Swagger 2.0 schema into an OpenAPI 3.1 (JSON
// Schema 2020-12) one: references point into components, and a $ref keeps
// its description but loses a redundant "type" sibling.
func convSchema(v any) any {
	switch v := v.(type) {
	case obj:
		out := obj{}
		for k, e := range v {
			switch {
			case k == "$ref":
				out[k] = strings.Replace(str(e), "#/definitions/", "#/components/schemas/", 1)
			case k == "x-nullable":
				// none are generated today; refuse silently wrong output
				panic("apidoc: x-nullable is not converted")
			default:
				out[k] = convSchema(e)
			}
		}
		if _, ok := out["$ref"]; ok {
			delete(out, "type")
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = convSchema(e)
		}
		return out
	default:
		return v
	}
}

// summarize returns a one-line summary (the first sentence of the proto
// comment, else words from the operation id) and the description (the
// whole comment when it is longer than its first sentence).
func summarize(operationID, summary, description string) (string, string) {
	text := summary
	if description != "" {
		if text != "" {
			text += "\n\n"
		}
		text += description
	}
	first := firstSentence(text)
	if first == "" {
		return words(operationID), ""
	}
	if strings.TrimSpace(strings.Join(strings.Fields(text), " ")) == first {
		return first, ""
	}
	return first, text
}

func firstSentence(text string) string {
	para, _, _ := strings.Cut(strings.TrimSpace(text), "\n\n")
	flat := strings.Join(strings.Fields(para), " ")
	for i := 0; i < len(flat); i++ {
		if flat[i] == '.' && (i+1 == len(flat) || flat[i+1] == ' ') {
			// "e.g." and "i.e." don't end a sentence
			if i >= 3 && (flat[i-3:i+1] == "e.g." || flat[i-3:i+1] == "i.e.") {
				continue
			}
			return flat[:i+1]
		}
	}
	return flat
}

var camelWord = regexp.MustCompile(`[A-Z][a-z0-9]*`)

// words: "ScheduleService_ListExportRuns2" -> "List export runs".
func words(operationID string) string {
	_, m, ok := strings.Cut(operationID, "_")
	if !ok {
		m = operationID
	}
	m = strings.TrimRight(m, "0123456789")
	ws := camelWord.FindAllString(m, -1)
	for i := 1; i < len(ws); i++ {
		ws[i] = strings.ToLower(ws[i])
	}
	return strings.Join(ws, " ")
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func sortedKeys(m obj) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// pruneSchemas drops the schemas nothing refers to (protobufNullValue: the
// generator emits it for google.protobuf.Struct, which no message uses).
func pruneSchemas(schemas obj, roots ...any) {
	used := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case obj:
			if r, ok := v["$ref"].(string); ok {
				if name, ok := strings.CutPrefix(r, "#/components/schemas/"); ok && !used[name] {
					used[name] = true
					walk(schemas[name])
				}
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	for _, r := range roots {
		walk(r)
	}
	for name := range schemas {
		if !used[name] {
			delete(schemas, name)
		}
	}
}
