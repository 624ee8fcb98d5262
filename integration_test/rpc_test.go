package integration_test

import (
	"context"
	"encoding/json"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "github.com/auditexport/auditexport/gen/go/auditexport/v1"
)

// rpcDef maps an RPC to its REST binding, as declared in the protos; tests
// are written once against JSON requests and run over both transports.
type rpcDef struct {
	service, httpMethod, path, body string
}

var rpcs = map[string]rpcDef{
	"CreateStorageIntegration":         {"IntegrationService", "POST", "/v1/storageIntegrations", "storage_integration"},
	"GetStorageIntegration":            {"IntegrationService", "GET", "/v1/storageIntegrations/{id}", ""},
	"ListStorageIntegrations":          {"IntegrationService", "GET", "/v1/storageIntegrations", ""},
	"UpdateStorageIntegration":         {"IntegrationService", "PATCH", "/v1/storageIntegrations/{storage_integration.id}", "storage_integration"},
	"DeleteStorageIntegration":         {"IntegrationService", "DELETE", "/v1/storageIntegrations/{id}", ""},
	"GetStorageIntegrationCredentials": {"IntegrationService", "GET", "/v1/storageIntegrations/{id}/credentials", ""},
	"TestStorageIntegration":           {"IntegrationService", "POST", "/v1/storageIntegrations/{id}:test", "*"},
	"ListConnections":                  {"WorkbookService", "GET", "/v1/connections", ""},
	"ExploreTable":                     {"WorkbookService", "POST", "/v1/connections/{connection_id}/tables/{table}:explore", "*"},
	"SaveWorkbookAs":                   {"WorkbookService", "POST", "/v1/workbooks/{id}:saveAs", "*"},
	"GetWorkbook":                      {"WorkbookService", "GET", "/v1/workbooks/{id}", ""},
	"ListWorkbooks":                    {"WorkbookService", "GET", "/v1/workbooks", ""},
	"UpdateWorkbook":                   {"WorkbookService", "PATCH", "/v1/workbooks/{workbook.id}", "workbook"},
	"DeleteWorkbook":                   {"WorkbookService", "DELETE", "/v1/workbooks/{id}", ""},
	"QueryElement":                     {"WorkbookService", "POST", "/v1/workbooks/{workbook_id}/elements/{element_id}:query", "*"},
	"CreateSchedule":                   {"ScheduleService", "POST", "/v1/workbooks/{workbook_id}/schedules", "schedule"},
	"GetSchedule":                      {"ScheduleService", "GET", "/v1/schedules/{id}", ""},
	"ListSchedules":                    {"ScheduleService", "GET", "/v1/schedules", ""},
	"UpdateSchedule":                   {"ScheduleService", "PATCH", "/v1/schedules/{schedule.id}", "schedule"},
	"DeleteSchedule":                   {"ScheduleService", "DELETE", "/v1/schedules/{id}", ""},
	"PauseSchedule":                    {"ScheduleService", "POST", "/v1/schedules/{id}:pause", "*"},
	"ResumeSchedule":                   {"ScheduleService", "POST", "/v1/schedules/{id}:resume", "*"},
	"GetExportRun":                     {"ScheduleService", "GET", "/v1/exportRuns/{id}", ""},
	"ListExportRuns":                   {"ScheduleService", "GET", "/v1/schedules/{schedule_id}/runs", ""},
	"CancelExportRun":                  {"ScheduleService", "POST", "/v1/exportRuns/{id}:cancel", "*"},
	"GetCurrentUser":                   {"AccountService", "GET", "/v1/users/me", ""},
	"CreateUser":                       {"AccountService", "POST", "/v1/users", "user"},
	"GetUser":                          {"AccountService", "GET", "/v1/users/{id}", ""},
	"ListUsers":                        {"AccountService", "GET", "/v1/users", ""},
	"UpdateUser":                       {"AccountService", "PATCH", "/v1/users/{user.id}", "user"},
	"GrantConnectionAccess":            {"AccountService", "POST", "/v1/connections/{connection_id}:grant", "*"},
	"RevokeConnectionAccess":           {"AccountService", "POST", "/v1/connections/{connection_id}:revoke", "*"},
	"CreateApiKey":                     {"AccountService", "POST", "/v1/apiKeys", "*"},
	"ListApiKeys":                      {"AccountService", "GET", "/v1/apiKeys", ""},
	"RevokeApiKey":                     {"AccountService", "POST", "/v1/apiKeys/{id}:revoke", "*"},
}

// Result is the transport-neutral outcome of a call.
type Result struct {
	Code       codes.Code
	Body       map[string]any // response (protojson / gateway JSON, lowerCamelCase)
	Message    string
	Reason     string   // ErrorInfo.reason
	Domain     string   // ErrorInfo.domain
	Violations []string // BadRequest field paths
}

// Transport calls an RPC with a JSON request (lowerCamelCase fields).
type Transport interface {
	Name() string
	Call(t *testing.T, rpc, key, reqJSON, requestID string) Result
}

type grpcTransport struct{ s *Server }

func (grpcTransport) Name() string { return "grpc" }

func (g grpcTransport) Call(t *testing.T, rpc, key, reqJSON, requestID string) Result {
	t.Helper()
	def, ok := rpcs[rpc]
	if !ok {
		t.Fatalf("unknown rpc %s", rpc)
	}
	sd, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName("auditexport.v1." + def.service))
	if err != nil {
		t.Fatal(err)
	}
	md := sd.(protoreflect.ServiceDescriptor).Methods().ByName(protoreflect.Name(rpc))
	inT, _ := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
	outT, _ := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	in, out := inT.New().Interface(), outT.New().Interface()
	if reqJSON == "" {
		reqJSON = "{}"
	}
	if err := (protojson.UnmarshalOptions{}).Unmarshal([]byte(reqJSON), in); err != nil {
		t.Fatalf("%s request %s: %v", rpc, reqJSON, err)
	}
	ctx := Ctx(key)
	if requestID != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", requestID)
	}
	ctx, cancel := context.WithTimeout(ctx, 30e9)
	defer cancel()
	err = g.s.Conn.Invoke(ctx, "/auditexport.v1."+def.service+"/"+rpc, in, out, grpc.WaitForReady(true))
	res := Result{Code: status.Code(err)}
	if err != nil {
		st := status.Convert(err)
		res.Message = st.Message()
		for _, d := range st.Details() {
			switch x := d.(type) {
			case *errdetails.ErrorInfo:
				res.Reason, res.Domain = x.GetReason(), x.GetDomain()
			case *errdetails.BadRequest:
				for _, v := range x.GetFieldViolations() {
					res.Violations = append(res.Violations, v.GetField())
				}
			}
		}
		return res
	}
	raw, _ := protojson.Marshal(out)
	_ = json.Unmarshal(raw, &res.Body)
	return res
}

type restTransport struct{ s *Server }

func (restTransport) Name() string { return "rest" }

var placeholder = regexp.MustCompile(`\{([a-z_.]+)\}`)

func camel(s string) string {
	parts := strings.Split(s, "_")
	for i := 1; i < len(parts); i++ {
		if parts[i] != "" {
			parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
		}
	}
	return strings.Join(parts, "")
}

func (r restTransport) Call(t *testing.T, rpc, key, reqJSON, requestID string) Result {
	t.Helper()
	def := rpcs[rpc]
	req := map[string]any{}
	if reqJSON != "" {
		if err := json.Unmarshal([]byte(reqJSON), &req); err != nil {
			t.Fatalf("%s request %s: %v", rpc, reqJSON, err)
		}
	}
	path := placeholder.ReplaceAllStringFunc(def.path, func(m string) string {
		fieldPath := strings.Split(m[1:len(m)-1], ".")
		var cur any = req
		var parent map[string]any
		var last string
		for _, p := range fieldPath {
			mm, _ := cur.(map[string]any)
			parent, last = mm, camel(p)
			cur = mm[last]
		}
		if len(fieldPath) == 1 && parent != nil {
			delete(parent, last)
		}
		s, _ := cur.(string)
		return url.PathEscape(s)
	})
	var body any
	switch def.body {
	case "":
		q := url.Values{}
		for k, v := range req {
			b, _ := json.Marshal(v)
			q.Set(k, strings.Trim(string(b), `"`))
		}
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
	case "*":
		body = req
	default:
		body = req[camel(def.body)]
		if body == nil {
			body = map[string]any{}
		}
		if mask, ok := req["updateMask"]; ok {
			path += "?updateMask=" + url.QueryEscape(mask.(string))
		}
		for k, v := range req {
			if k != camel(def.body) && k != "updateMask" {
				b, _ := json.Marshal(v)
				sep := "?"
				if strings.Contains(path, "?") {
					sep = "&"
				}
				path += sep + k + "=" + url.QueryEscape(strings.Trim(string(b), `"`))
			}
		}
	}
	hdr := []string{}
	if requestID != "" {
		hdr = append(hdr, "X-Request-Id", requestID)
	}
	code, out, _ := r.s.REST(def.httpMethod, path, key, body, hdr...)
	res := Result{Code: codes.OK, Body: out}
	if code != 200 {
		c, _ := out["code"].(float64)
		res.Code = codes.Code(int(c))
		res.Message, _ = out["message"].(string)
		details, _ := out["details"].([]any)
		for _, d := range details {
			dm, _ := d.(map[string]any)
			switch dm["@type"] {
			case "type.googleapis.com/google.rpc.ErrorInfo":
				res.Reason, _ = dm["reason"].(string)
				res.Domain, _ = dm["domain"].(string)
			case "type.googleapis.com/google.rpc.BadRequest":
				fvs, _ := dm["fieldViolations"].([]any)
				for _, fv := range fvs {
					f, _ := fv.(map[string]any)["field"].(string)
					res.Violations = append(res.Violations, f)
				}
			}
		}
		res.Body = nil
	}
	return res
}

// transports returns both transports for a server.
func transports(s *Server) []Transport {
	return []Transport{grpcTransport{s}, restTransport{s}}
}
