package mainlib

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/metrics"
	"github.com/sluice-gateway/sluice/internal/telemetry"
)

// obsFlags are the observability flags every data-plane command takes.
type obsFlags struct {
	otlpEndpoint  string
	otlpHeaderEnv string
	metricsListen string
	accessLog     bool
}

func (o *obsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&o.otlpEndpoint, "otlp-endpoint", os.Getenv("SLUICE_OTLP_ENDPOINT"),
		"OTLP collector for traces: http(s)://host:port (OTLP/HTTP) or grpc(s)://host:port (OTLP/gRPC); empty: only projects with their own endpoint are exported")
	fs.StringVar(&o.otlpHeaderEnv, "otlp-header-env", os.Getenv("SLUICE_OTLP_HEADER_ENV"),
		"environment variables a project's telemetry.otlp_headers_env may name (comma-separated); nothing else is ever read")
	fs.StringVar(&o.metricsListen, "metrics-listen", os.Getenv("SLUICE_METRICS_LISTEN"), "HTTP address serving Prometheus /metrics (e.g. 127.0.0.1:9464); empty: off")
	fs.BoolVar(&o.accessLog, "access-log", true, "log one JSON line per request")
}

// observability is a process's tracer and metrics, shared by its components.
type observability struct {
	tp        *telemetry.Provider
	metrics   *metrics.Metrics
	accessLog *slog.Logger // nil: off
	// headerEnv lists the variables a project's OTLP headers may be read from. Whoever can
	// edit a project chooses where its spans go: without this list they could name a
	// provider key's variable and have it sent to their collector.
	headerEnv []string
}

// startObservability builds the tracer and metrics and serves /metrics; everything stops
// with g.
func startObservability(ctx context.Context, g *group, logger *slog.Logger, cancel context.CancelFunc, service string, f obsFlags) (*observability, error) {
	tp, err := telemetry.New(telemetry.Options{Service: service, Default: telemetry.Endpoint{URL: f.otlpEndpoint},
		Logger: logger.With("component", "telemetry")})
	if err != nil {
		return nil, fmt.Errorf("--otlp-endpoint: %w", err)
	}
	g.onStop(func() {
		sctx, done := context.WithTimeout(context.Background(), 5*time.Second)
		defer done()
		_ = tp.Shutdown(sctx)
	})
	o := &observability{tp: tp, metrics: metrics.New(), headerEnv: splitList(f.otlpHeaderEnv)}
	o.metrics.RegisterSpanStats(func() (uint64, uint64, uint64) {
		s := tp.Stats()
		return s.Exported, s.Dropped, s.Failed
	})
	if f.accessLog {
		o.accessLog = logger.With("component", "access")
	}
	if f.metricsListen != "" {
		lis, err := listen(f.metricsListen)
		if err != nil {
			return nil, fmt.Errorf("--metrics-listen: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", o.metrics.Handler())
		serveHTTP(ctx, g, "metrics", logger, cancel, &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, lis)
	}
	return o, nil
}

func (o *observability) tracer(name string) trace.Tracer { return o.tp.Tracer(name) }

// loader wraps a component's snapshot loader: the projects' own collectors are routed
// and the applied version is counted, whatever the component makes of the rest.
func (o *observability) loader(component string, load func(*config.Snapshot) error) func(*config.Snapshot) error {
	return func(s *config.Snapshot) error {
		err := load(s)
		routes, rerr := projectRoutes(s, o.headerEnv)
		o.tp.SetRoutes(routes)
		o.metrics.ConfigApplied(component, s.Version, 0)
		return errors.Join(err, rerr)
	}
}

// envoyOTLP is the collector Envoy exports its own spans to: the gateway's, when Envoy can
// reach it without TLS (grpc:// or http://; Envoy's cluster carries no TLS context).
func envoyOTLP(endpoint string, logger *slog.Logger) string {
	if endpoint == "" {
		return ""
	}
	if u, err := url.Parse(endpoint); err == nil && (u.Scheme == "grpc" || u.Scheme == "http") {
		return endpoint
	}
	logger.Info("envoy exports no spans of its own: it reaches an OTLP collector over grpc:// or http:// only")
	return ""
}

// projectRoutes maps each project with its own OTLP endpoint to that endpoint, header
// values read from the process's environment, from the allowed variables only. A project
// naming another variable is left unrouted (its spans go to the gateway's collector) and
// reported. Decode errors are the component loader's to report.
func projectRoutes(s *config.Snapshot, allowed []string) (map[string]telemetry.Endpoint, error) {
	r, _ := s.Decode()
	routes := map[string]telemetry.Endpoint{}
	var errs []error
	for id, p := range r.Projects {
		t := p.Telemetry
		if t == nil || t.OTLPEndpoint == "" {
			continue
		}
		ep, ok := telemetry.Endpoint{URL: t.OTLPEndpoint}, true
		for h, env := range t.OTLPHeadersEnv {
			if !slices.Contains(allowed, env) {
				errs = append(errs, fmt.Errorf("project %s: telemetry.otlp_headers_env names %s, which --otlp-header-env does not allow: its spans go to the gateway's collector", id, env))
				ok = false
				break
			}
			if ep.Headers == nil {
				ep.Headers = map[string]string{}
			}
			ep.Headers[h] = os.Getenv(env)
		}
		if ok {
			routes[id] = ep
		}
	}
	return routes, errors.Join(errs...)
}
