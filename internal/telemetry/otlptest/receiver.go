// Package otlptest is an in-process OTLP trace receiver for tests: OTLP/HTTP (protobuf and
// JSON) and OTLP/gRPC on loopback ports, recording every span it accepts as a flattened
// [Span]. It can be told to fail or hang, to show that a dead collector slows nothing.
package otlptest

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Behaviour is how the Receiver answers export requests.
type Behaviour int

const (
	// OK records the spans and answers success.
	OK Behaviour = iota
	// Fail answers HTTP 500 or gRPC Internal (neither is retryable) and records nothing.
	Fail
	// Hang holds each request until the client gives up, SetBehaviour is called or the
	// Receiver closes, then fails it as Fail does.
	Hang
)

// maxBody bounds an OTLP/HTTP request body.
const maxBody = 64 << 20

var errFail = errors.New("otlptest: failing as told")

// Receiver is an OTLP trace receiver on two loopback ports. It is safe for concurrent use.
type Receiver struct {
	// Set by Start, then read-only.
	httpURL, grpcURL string
	httpSrv          *http.Server
	grpcSrv          *grpc.Server
	closing          chan struct{} // closed by Close; releases hung requests
	closeOnce        sync.Once
	serving          sync.WaitGroup

	// mu guards the fields below.
	mu        sync.Mutex
	spans     []Span
	requests  int
	behaviour Behaviour
	release   chan struct{} // closed by SetBehaviour; releases hung requests
	changed   chan struct{} // closed and replaced whenever spans or requests change
}

// Start starts a Receiver. Close it when done.
func Start() (*Receiver, error) {
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("otlptest: listen: %w", err)
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = hl.Close()
		return nil, fmt.Errorf("otlptest: listen: %w", err)
	}
	r := &Receiver{
		httpURL: "http://" + hl.Addr().String(),
		grpcURL: "grpc://" + gl.Addr().String(),
		closing: make(chan struct{}),
		release: make(chan struct{}),
		changed: make(chan struct{}),
	}
	r.httpSrv = &http.Server{Handler: http.HandlerFunc(r.serveHTTP), ReadHeaderTimeout: 10 * time.Second}
	r.grpcSrv = grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(r.grpcSrv, traceService{r: r})
	r.serving.Add(2)
	go func() {
		defer r.serving.Done()
		_ = r.httpSrv.Serve(hl) // returns ErrServerClosed on Close
	}()
	go func() {
		defer r.serving.Done()
		_ = r.grpcSrv.Serve(gl)
	}()
	return r, nil
}

// NewReceiver starts a Receiver that is closed when t's test ends.
func NewReceiver(t testing.TB) *Receiver {
	t.Helper()
	r, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// HTTPURL is the OTLP/HTTP base URL, "http://127.0.0.1:port". Any path is accepted; the
// exporters' default is /v1/traces.
func (r *Receiver) HTTPURL() string { return r.httpURL }

// GRPCURL is the OTLP/gRPC URL, "grpc://127.0.0.1:port" (no TLS).
func (r *Receiver) GRPCURL() string { return r.grpcURL }

// Close stops both servers, releasing hung requests, and waits for them to stop serving.
// It may be called more than once.
func (r *Receiver) Close() {
	r.closeOnce.Do(func() {
		close(r.closing)
		_ = r.httpSrv.Close()
		r.grpcSrv.Stop()
		r.serving.Wait()
	})
}

// SetBehaviour changes how later requests are answered and releases requests held by Hang.
func (r *Receiver) SetBehaviour(b Behaviour) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.behaviour = b
	close(r.release)
	r.release = make(chan struct{})
}

// Spans returns a copy of the spans received so far, in arrival order.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.spans)
}

// Requests returns how many export requests have arrived, whatever their outcome.
func (r *Receiver) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

// Reset forgets the spans received so far.
func (r *Receiver) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.spans = nil
}

// WaitFor waits until cond holds for the spans received so far and returns them. cond is
// evaluated now and after each export request; it must not block. When ctx ends first,
// WaitFor returns the last spans it saw and ctx's error.
func (r *Receiver) WaitFor(ctx context.Context, cond func([]Span) bool) ([]Span, error) {
	for {
		r.mu.Lock()
		spans := slices.Clone(r.spans)
		changed := r.changed
		r.mu.Unlock()
		if cond(spans) {
			return spans, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return spans, ctx.Err()
		}
	}
}

// WaitRequests waits until at least n export requests have arrived.
func (r *Receiver) WaitRequests(ctx context.Context, n int) error {
	for {
		r.mu.Lock()
		got := r.requests
		changed := r.changed
		r.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("otlptest: %d of %d requests: %w", got, n, ctx.Err())
		}
	}
}

// notifyLocked wakes WaitFor and WaitRequests. r.mu must be held.
func (r *Receiver) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// export handles one export request on either protocol.
func (r *Receiver) export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest, endpoint, path string, h http.Header) error {
	r.mu.Lock()
	r.requests++
	b, release := r.behaviour, r.release
	r.notifyLocked()
	r.mu.Unlock()
	switch b {
	case Fail:
		return errFail
	case Hang:
		select {
		case <-ctx.Done():
		case <-release:
		case <-r.closing:
		}
		return errFail
	}
	spans := flatten(req, endpoint, path, h)
	r.mu.Lock()
	r.spans = append(r.spans, spans...)
	r.notifyLocked()
	r.mu.Unlock()
	return nil
}

func (r *Receiver) serveHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		http.Error(w, "otlptest: POST only", http.StatusMethodNotAllowed)
		return
	}
	var body io.Reader = http.MaxBytesReader(w, req.Body, maxBody)
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			http.Error(w, "otlptest: bad gzip body", http.StatusBadRequest)
			return
		}
		defer zr.Close()
		body = io.LimitReader(zr, maxBody)
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, "otlptest: reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	ct, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type"))
	var msg coltracepb.ExportTraceServiceRequest
	switch ct {
	case "application/x-protobuf":
		err = proto.Unmarshal(raw, &msg)
	case "application/json":
		err = unmarshalJSON(raw, &msg)
	default:
		http.Error(w, "otlptest: unsupported content type "+ct, http.StatusUnsupportedMediaType)
		return
	}
	if err != nil {
		http.Error(w, "otlptest: decoding body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := r.export(req.Context(), &msg, "http", req.URL.Path, req.Header.Clone()); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	// An empty ExportTraceServiceResponse: zero bytes in protobuf, {} in JSON.
	w.Header().Set("Content-Type", ct)
	if ct == "application/json" {
		_, _ = io.WriteString(w, "{}")
	}
}

type traceService struct {
	coltracepb.UnimplementedTraceServiceServer
	r *Receiver
}

// Export implements [coltracepb.TraceServiceServer.Export].
func (s traceService) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	h := http.Header{}
	md, _ := metadata.FromIncomingContext(ctx)
	for k, vs := range md {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	if err := s.r.export(ctx, req, "grpc", "", h); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}
