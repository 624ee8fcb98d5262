package integration_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "github.com/auditexport/auditexport/gen/go/auditexport/v1"
)

// rpcDef is an RPC's REST binding, read from its google.api.http option in
// the proto descriptors (the generated package registers them); tests are
// written once against JSON requests and run over both transports.
type rpcDef struct {
	service, httpMethod, path, body string
	// streaming RPCs (SendNow, WatchExportRun) have routes too; the
	// transports call only unary ones (streams: testenv.SendNow, Watch,
	// RESTStream).
	streaming bool
	also      []rpcDef // additional bindings
}

// apiPackage is the proto package whose services are the API.
const apiPackage = "auditexport.v1"

// apiServices are the services the API must consist of: every RPC of each
// has a REST route (TestRESTRoutesFromProtos).
var apiServices = []string{"IntegrationService", "WorkbookService", "ScheduleService", "AccountService"}

// rpcs maps each RPC name to its route; rpcsErr says which RPCs have no
// usable route (they are left out of rpcs).
var rpcs, rpcsErr = protoRoutes()

// protoRoutes reads the REST route of every RPC of the services in
// apiPackage's registered files.
func protoRoutes() (map[string]rpcDef, error) {
	out := map[string]rpcDef{}
	var errs []error
	protoregistry.GlobalFiles.RangeFilesByPackage(apiPackage, func(fd protoreflect.FileDescriptor) bool {
		for i := 0; i < fd.Services().Len(); i++ {
			sd := fd.Services().Get(i)
			for j := 0; j < sd.Methods().Len(); j++ {
				md := sd.Methods().Get(j)
				def, err := routeOf(md)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				if prev, dup := out[string(md.Name())]; dup {
					errs = append(errs, fmt.Errorf("RPC name %s in both %s and %s", md.Name(), prev.service, sd.Name()))
					continue
				}
				out[string(md.Name())] = def
			}
		}
		return true
	})
	return out, errors.Join(errs...)
}

// routeOf is the google.api.http binding of a method; its additional
// bindings are kept in also (the REST transport calls the primary one).
func routeOf(md protoreflect.MethodDescriptor) (rpcDef, error) {
	rule, _ := proto.GetExtension(md.Options(), annotations.E_Http).(*annotations.HttpRule)
	if rule == nil {
		return rpcDef{}, fmt.Errorf("RPC %s has no google.api.http route", md.FullName())
	}
	def, err := bindingOf(md, rule)
	if err != nil {
		return def, err
	}
	for _, b := range rule.GetAdditionalBindings() {
		more, err := bindingOf(md, b)
		if err != nil {
			return def, err
		}
		def.also = append(def.also, more)
	}
	return def, nil
}

func bindingOf(md protoreflect.MethodDescriptor, rule *annotations.HttpRule) (rpcDef, error) {
	def := rpcDef{service: string(md.Parent().Name()), body: rule.GetBody(),
		streaming: md.IsStreamingClient() || md.IsStreamingServer()}
	switch p := rule.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		def.httpMethod, def.path = "GET", p.Get
	case *annotations.HttpRule_Post:
		def.httpMethod, def.path = "POST", p.Post
	case *annotations.HttpRule_Put:
		def.httpMethod, def.path = "PUT", p.Put
	case *annotations.HttpRule_Patch:
		def.httpMethod, def.path = "PATCH", p.Patch
	case *annotations.HttpRule_Delete:
		def.httpMethod, def.path = "DELETE", p.Delete
	case nil:
		return def, fmt.Errorf("RPC %s has no google.api.http route", md.FullName())
	default:
		return def, fmt.Errorf("RPC %s: google.api.http pattern %T is not one the REST transport calls", md.FullName(), p)
	}
	return def, nil
}

// TestRESTRoutesFromProtos: the API is the four services, every RPC of them
// has a REST route, and each route names fields of the RPC's request.
func TestRESTRoutesFromProtos(t *testing.T) {
	t.Parallel()
	if rpcsErr != nil {
		t.Errorf("routes: %v", rpcsErr)
	}
	var services []string
	protoregistry.GlobalFiles.RangeFilesByPackage(apiPackage, func(fd protoreflect.FileDescriptor) bool {
		for i := 0; i < fd.Services().Len(); i++ {
			services = append(services, string(fd.Services().Get(i).Name()))
		}
		return true
	})
	if !sameSet(services, apiServices) {
		t.Errorf("services of %s: %v, want %v", apiPackage, services, apiServices)
	}
	methods := 0
	for _, svc := range apiServices {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(apiPackage + "." + svc))
		if err != nil {
			t.Errorf("service %s: %v", svc, err)
			continue
		}
		ms := d.(protoreflect.ServiceDescriptor).Methods()
		for i := 0; i < ms.Len(); i++ {
			md := ms.Get(i)
			methods++
			def, ok := rpcs[string(md.Name())]
			if !ok {
				t.Errorf("RPC %s has no REST route", md.FullName())
				continue
			}
			if def.service != svc {
				t.Errorf("route of %s names service %s", md.FullName(), def.service)
			}
			for _, b := range append([]rpcDef{def}, def.also...) {
				checkBinding(t, md, b)
			}
		}
	}
	if methods == 0 || len(rpcs) != methods {
		t.Errorf("%d routes for %d RPCs of %v", len(rpcs), methods, apiServices)
	}
}

// checkBinding: a binding's path is under /v1/, its variables are
// (singular, scalar) fields of the request, and its body is "", "*" or a
// field of the request, never on GET or DELETE.
func checkBinding(t *testing.T, md protoreflect.MethodDescriptor, def rpcDef) {
	t.Helper()
	if !strings.HasPrefix(def.path, "/v1/") {
		t.Errorf("route of %s: path %q is not under /v1/", md.FullName(), def.path)
	}
	for _, m := range placeholder.FindAllStringSubmatch(def.path, -1) {
		if !hasFieldPath(md.Input(), strings.Split(m[1], ".")) {
			t.Errorf("route of %s: path variable {%s} is no field of %s", md.FullName(), m[1], md.Input().FullName())
		}
	}
	if strings.Count(def.path, "{") != len(placeholder.FindAllString(def.path, -1)) {
		t.Errorf("route of %s: path %q has a variable the REST transport cannot fill", md.FullName(), def.path)
	}
	if def.body != "" && def.body != "*" && md.Input().Fields().ByName(protoreflect.Name(def.body)) == nil {
		t.Errorf("route of %s: body %q is no field of %s", md.FullName(), def.body, md.Input().FullName())
	}
	if def.body != "" && (def.httpMethod == "GET" || def.httpMethod == "DELETE") {
		t.Errorf("route of %s: %s with a body", md.FullName(), def.httpMethod)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// hasFieldPath reports whether path (proto field names) leads through
// singular message fields of md to a singular scalar field.
func hasFieldPath(md protoreflect.MessageDescriptor, path []string) bool {
	for i, name := range path {
		f := md.Fields().ByName(protoreflect.Name(name))
		if f == nil || f.Cardinality() == protoreflect.Repeated {
			return false
		}
		if i == len(path)-1 {
			return f.Message() == nil
		}
		if md = f.Message(); md == nil {
			return false
		}
	}
	return false
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

// routeFor is the route of a unary RPC; an RPC without one fails the test.
func routeFor(t *testing.T, rpc string) rpcDef {
	t.Helper()
	def, ok := rpcs[rpc]
	switch {
	case !ok && rpcsErr != nil:
		t.Fatalf("unknown rpc %s (routes: %v)", rpc, rpcsErr)
	case !ok:
		t.Fatalf("unknown rpc %s", rpc)
	case def.streaming:
		t.Fatalf("rpc %s streams: follow it with testenv.SendNow, Watch or RESTStream", rpc)
	}
	return def
}

type grpcTransport struct{ s *Server }

func (grpcTransport) Name() string { return "grpc" }

func (g grpcTransport) Call(t *testing.T, rpc, key, reqJSON, requestID string) Result {
	t.Helper()
	def := routeFor(t, rpc)
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

// protoPath turns a JSON field path (schedule.timeZone) back into its proto
// form (schedule.time_zone); brackets are kept as they are.
func protoPath(s string) string {
	var b strings.Builder
	depth := 0
	for _, r := range s {
		switch {
		case r == '[':
			depth++
		case r == ']' && depth > 0:
			depth--
		case depth == 0 && r >= 'A' && r <= 'Z':
			b.WriteByte('_')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (r restTransport) Call(t *testing.T, rpc, key, reqJSON, requestID string) Result {
	t.Helper()
	def := routeFor(t, rpc)
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
					// REST names JSON paths (schedule.timeZone); the
					// cases expect proto paths, which gRPC answers with.
					f, _ := fv.(map[string]any)["field"].(string)
					if strings.Contains(strings.Split(f, "[")[0], "_") {
						t.Errorf("%s over REST: field violation %q is not a JSON (lowerCamelCase) path", rpc, f)
					}
					res.Violations = append(res.Violations, protoPath(f))
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
