// Package extproc is Sluice's policy enforcement point: an Envoy ext_proc gRPC server that
// authenticates the virtual key, reads what routing needs from the buffered request body,
// decides the provider chain and hands that decision to the dispatcher as a signed context
// token. It answers from memory: no network call on the hot path.
package extproc

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sluice-gateway/sluice/extproc/guardrail"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/counters"
	"github.com/sluice-gateway/sluice/internal/ctxtoken"
	"github.com/sluice-gateway/sluice/internal/logging"
	"github.com/sluice-gateway/sluice/internal/metrics"
	"github.com/sluice-gateway/sluice/internal/pricing"
	"github.com/sluice-gateway/sluice/internal/vkey"
)

// DefaultMaxRequestBytes is the largest request body accepted, matching Envoy's buffer limit.
const DefaultMaxRequestBytes = 32 << 20

// Config configures a Server.
type Config struct {
	Logger *slog.Logger     // required
	Signer *ctxtoken.Signer // required: mints x-sluice-ctx
	Hasher *vkey.Hasher     // required: hashes presented secrets
	// MaxRequestBytes bounds the request body; 0 means DefaultMaxRequestBytes.
	MaxRequestBytes int64
	// ResolveTimeout bounds one on-demand lookup; 0 means 250 ms.
	ResolveTimeout time.Duration
	// Now is the clock for expiry and rotation grace; nil means time.Now.
	Now func() time.Time
	// WebhookClient calls guardrail webhooks; nil means the guardrail package's default.
	WebhookClient *http.Client
	// Tracer records the spans of refused requests and extproc's policy work; nil records
	// none.
	Tracer trace.Tracer
	// Metrics counts ext_proc messages, refusals and guardrail verdicts; nil counts nothing.
	Metrics *metrics.Metrics
	// AccessLog, when set, gets one line per request extproc answers itself.
	AccessLog *slog.Logger
	// Counters holds budget spend and rate-limit windows. Nil: a key under a budget or a
	// rate limit meets the failure mode below.
	Counters counters.Store
	// CountersFailOpen admits requests without budgets and rate limits while the counter
	// store cannot answer; false (the default) refuses them with 503.
	CountersFailOpen bool
	// Prices is the price table worst-case costs are reserved from; nil means the bundled
	// one.
	Prices *pricing.Table
}

// SetResolver sets the resolver asked for a key this replica has not seen (one created
// since the last push reached it); without one an unknown key is refused at once. Call it
// before serving: it is not synchronised with requests.
func (s *Server) SetResolver(r KeyResolver) { s.resolver = r }

// KeyResolver resolves a key hash the replica has not seen. Lookup must honour ctx, and
// when it finds the key it must also have delivered it to LoadSnapshot before returning,
// so the retry that follows sees it. It is called only on a cache miss, never on the hot
// path of a known key.
type KeyResolver interface {
	ResolveKeyHash(ctx context.Context, hexHash string) (found bool, err error)
}

// Server implements the ext_proc ExternalProcessor service. It is safe for concurrent use;
// each gRPC stream (one per HTTP request) is handled sequentially by its own goroutine.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer
	cfg    Config
	state  atomic.Pointer[compiled]
	misses *missCache // recently unknown hashes: no second lookup for a flood of bad keys
	// resolver is set once before serving, see SetResolver.
	resolver   KeyResolver
	lookups    chan struct{} // semaphore: on-demand lookups in flight
	lookupWarn logging.EverySecond
	storeWarn  logging.EverySecond
	prices     *pricing.Table
	guardOpts  guardrail.Options // shared by every compiled guardrail: one webhook client
}

// New returns a server with an empty key set; call Load before serving traffic.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil || cfg.Signer == nil || cfg.Hasher == nil {
		return nil, errors.New("extproc: Logger, Signer and Hasher are required")
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.ResolveTimeout <= 0 {
		cfg.ResolveTimeout = 250 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Prices == nil {
		cfg.Prices = pricing.Bundled()
	}
	s := &Server{cfg: cfg, prices: cfg.Prices, misses: newMissCache(4096, time.Second), lookups: make(chan struct{}, maxLookups),
		guardOpts: guardrail.Options{Client: cfg.WebhookClient, Logger: cfg.Logger.With("component", "guardrail")}}
	s.state.Store(&compiled{})
	return s, nil
}

// Load compiles a static config file and publishes it. On error the previous config stays
// in force.
func (s *Server) Load(c *config.Config) error {
	snap, err := c.Snapshot()
	if err != nil {
		return err
	}
	return s.LoadSnapshot(snap)
}

// LoadSnapshot compiles the control plane's snapshot and publishes it. Documents that do not
// decode are left out and reported in the error; the rest is published, since one bad key
// must not stop the gateway from serving every other one.
func (s *Server) LoadSnapshot(snap *config.Snapshot) error {
	next, err := compile(snap, s.guardOpts)
	s.state.Store(next)
	return err
}

// Register adds the service to g.
func (s *Server) Register(g *grpc.Server) { extprocv3.RegisterExternalProcessorServer(g, s) }

// Process handles one HTTP request's ext_proc stream: Recv → handle → Send, in order, with
// per-request state on this goroutine's stack.
func (s *Server) Process(stream extprocv3.ExternalProcessor_ProcessServer) (err error) {
	defer func() {
		// One malformed request must not take down the sidecar for all traffic.
		if r := recover(); r != nil {
			s.cfg.Logger.Error("extproc: panic", "panic", r)
			err = status.Error(codes.Internal, "internal error")
		}
	}()
	req := request{srv: s, ctx: stream.Context(), st: s.state.Load()}
	if md, ok := metadata.FromIncomingContext(stream.Context()); ok {
		if tp := md.Get("traceparent"); len(tp) == 1 {
			req.envoyTraceparent = tp[0]
		}
	}
	for {
		msg, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
		var resp *extprocv3.ProcessingResponse
		mt := s.cfg.Metrics
		switch m := msg.Request.(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			mt.ExtProcMessage("request_headers")
			resp = req.onHeaders(m.RequestHeaders)
		case *extprocv3.ProcessingRequest_RequestBody:
			mt.ExtProcMessage("request_body")
			resp = req.onBody(m.RequestBody)
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			mt.ExtProcMessage("response_headers")
			resp = req.onResponseHeaders(m.ResponseHeaders)
		case *extprocv3.ProcessingRequest_ResponseBody:
			mt.ExtProcMessage("response_body")
			resp = req.onResponseBody(m.ResponseBody)
		default:
			// Trailer phases are skipped in the filter config; if a future config sends
			// them, let them through untouched rather than stall the request.
			resp = passThrough(msg)
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// headerValue returns a header's value; Envoy sends raw_value, older versions value.
func headerValue(h *corev3.HeaderValue) string {
	if len(h.RawValue) > 0 {
		return string(h.RawValue)
	}
	return h.Value
}

// bearer extracts the credential from an Authorization header value.
func bearer(v string) string {
	if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		return strings.TrimSpace(v[7:])
	}
	return ""
}

func passThrough(msg *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	switch msg.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}
	default:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}
	}
}
