package app

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/gen/openapi"
	"github.com/auditexport/auditexport/internal/apidoc"
	"github.com/auditexport/auditexport/internal/clientip"
	"github.com/auditexport/auditexport/internal/console"
	"github.com/auditexport/auditexport/internal/metrics"
	"github.com/auditexport/auditexport/internal/version"
	"github.com/auditexport/auditexport/server"
)

// maxBodyBytes bounds REST request bodies.
const maxBodyBytes = 4 << 20

// httpLimits are the request-level guards of the REST handler.
type httpLimits struct {
	trusted     clientip.Trusted
	bodyTimeout time.Duration
	// ready reports whether the database answers (/readyz); nil: always.
	ready func(context.Context) error
}

func newHTTPHandler(ctx context.Context, inproc *bufconn.Listener, hs *health.Server, mets *metrics.Metrics, origins []string, lim httpLimits) (http.Handler, func(), error) {
	conn, err := grpc.NewClient("passthrough:///inproc",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return inproc.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	)
	if err != nil {
		return nil, nil, err
	}
	gw := runtime.NewServeMux(
		// Unset scalars come back as their zero value ("", 0, false, the
		// enum's 0 name) and unset messages are left out: never a JSON
		// null (the gateway's default marshaler writes null for those).
		// Unknown request fields are ignored, as with the default.
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.HTTPBodyMarshaler{Marshaler: &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{EmitDefaultValues: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
		}}),
		runtime.WithIncomingHeaderMatcher(func(h string) (string, bool) {
			switch {
			case strings.EqualFold(h, "X-Request-Id"):
				return "x-request-id", true
			case strings.EqualFold(h, server.ClientIPHeader):
				return server.ClientIPMetadata, true
			}
			md, ok := runtime.DefaultHeaderMatcher(h)
			if ok && strings.EqualFold(md, server.ClientIPMetadata) {
				return "", false // Grpc-Metadata-X-Auditexport-Client-Ip: a forgery
			}
			return md, ok
		}),
		runtime.WithOutgoingHeaderMatcher(func(h string) (string, bool) {
			if h == "x-request-id" {
				return "X-Request-Id", true
			}
			return runtime.DefaultHeaderMatcher(h)
		}),
		runtime.WithErrorHandler(func(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
			runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, server.GatewayError(err))
		}),
	)
	for _, reg := range []func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error{
		pb.RegisterIntegrationServiceHandler,
		pb.RegisterWorkbookServiceHandler,
		pb.RegisterScheduleServiceHandler,
		pb.RegisterAccountServiceHandler,
	} {
		if err := reg(ctx, gw, conn); err != nil {
			_ = conn.Close()
			return nil, nil, err
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", clientAddr(http.MaxBytesHandler(readBody(gw, lim.bodyTimeout), maxBodyBytes), lim.trusted))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		resp, err := hs.Check(r.Context(), &healthpb.HealthCheckRequest{})
		w.Header().Set("Content-Type", "application/json")
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status":"NOT_SERVING"}`))
			return
		}
		_, _ = w.Write([]byte(`{"status":"SERVING"}`))
	})
	// /healthz: the process serves (liveness). /readyz: it can also do its
	// work — the database answers within 2 s (migrations ran before the
	// listeners opened) — so a load balancer sends traffic elsewhere while
	// the database is unreachable, without a restart loop.
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		resp, err := hs.Check(r.Context(), &healthpb.HealthCheckRequest{})
		if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			err = errors.New("not serving")
		}
		if err == nil && lim.ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			err = lim.ready(ctx)
			cancel()
			if err != nil {
				err = errors.New("database unreachable")
			}
		}
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]string{"status": "NOT_READY", "reason": err.Error()})
			return
		}
		_, _ = w.Write([]byte(`{"status":"READY"}`))
	})
	// Unauthenticated, like /healthz: the metrics are process-wide counts
	// and durations, with no secrets, tenant names or identifiers.
	mux.Handle("GET /metrics", mets.Handler())
	// The OpenAPI 3.1 document (info.version: this build's) and the API
	// reference page over it, unauthenticated like /healthz.
	docs, err := apidoc.Handler(openapi.Spec, version.String())
	if err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	mux.Handle("GET /openapi.json", docs)
	mux.Handle("GET /docs", docs)
	mux.Handle("GET /docs/", docs)
	// The web console at / and every client-side route under it (index.html
	// as the history fallback); it answers 404 for the paths above and
	// everything under them, so it never shadows them.
	mux.Handle("/", console.Handler())
	return cors(mux, origins), func() { _ = conn.Close() }, nil
}

// cors answers browser preflights and sets CORS headers for allowed origins
// only; with no origins configured, cross-origin browser calls are refused.
func cors(next http.Handler, origins []string) http.Handler {
	if len(origins) == 0 {
		return next
	}
	allowed := map[string]bool{}
	for _, o := range origins {
		allowed[strings.TrimSuffix(o, "/")] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin != "" && (allowed[origin] || allowed["*"]) {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Add("Vary", "Origin")
			h.Set("Access-Control-Expose-Headers", "X-Request-Id")
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				h.Set("Access-Control-Allow-Methods", "GET, POST, PATCH, DELETE, OPTIONS")
				h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Request-Id")
				h.Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
