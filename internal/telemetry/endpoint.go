package telemetry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Endpoint is an OTLP collector spans are exported to.
type Endpoint struct {
	// URL picks the protocol by scheme:
	//   - http://host[:port][/path], https://…: OTLP/HTTP protobuf; the path defaults to /v1/traces.
	//   - grpc://host:port: OTLP/gRPC without TLS.
	//   - grpcs://host:port: OTLP/gRPC over TLS, verified against the system roots.
	// The URL may not carry credentials, a query or a fragment: put credentials in Headers.
	URL string
	// Headers are sent with every export (gRPC metadata for grpc and grpcs). They may hold
	// secrets: their values are never logged and never appear in an error.
	Headers map[string]string
}

// DefaultTracesPath is the OTLP/HTTP path used when an http(s) URL has none.
const DefaultTracesPath = "/v1/traces"

// Validate reports whether e is usable. Errors name the offending header but never its value.
func (e Endpoint) Validate() error {
	_, err := e.parse()
	return err
}

// equal reports whether e and o would build the same exporter.
func (e Endpoint) equal(o Endpoint) bool {
	return e.URL == o.URL && maps.Equal(e.Headers, o.Headers)
}

func (e Endpoint) parse() (*url.URL, error) {
	if e.URL == "" {
		return nil, errors.New("telemetry: endpoint URL is empty")
	}
	u, err := url.Parse(e.URL)
	if err != nil {
		// url.Error quotes the whole URL, which may hold credentials: do not wrap it.
		return nil, errors.New("telemetry: endpoint URL does not parse")
	}
	if u.User != nil {
		return nil, errors.New("telemetry: endpoint URL must not carry credentials; use Headers")
	}
	switch u.Scheme {
	case "http", "https", "grpc", "grpcs":
	default:
		return nil, fmt.Errorf("telemetry: endpoint %q: scheme must be http, https, grpc or grpcs", e.URL)
	}
	if u.Opaque != "" || u.Hostname() == "" {
		return nil, fmt.Errorf("telemetry: endpoint %q: no host", e.URL)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return nil, fmt.Errorf("telemetry: endpoint %q: a query or fragment is not allowed", e.URL)
	}
	port := u.Port()
	grpcScheme := u.Scheme == "grpc" || u.Scheme == "grpcs"
	if port == "" && grpcScheme {
		return nil, fmt.Errorf("telemetry: endpoint %q: a gRPC endpoint needs a port", e.URL)
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("telemetry: endpoint %q: bad port", e.URL)
		}
	}
	if grpcScheme && u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("telemetry: endpoint %q: a gRPC endpoint has no path", e.URL)
	}
	for name, value := range e.Headers {
		if !validHeaderName(name) {
			return nil, fmt.Errorf("telemetry: endpoint %q: header name %q is not a valid token", e.URL, name)
		}
		if !validHeaderValue(value) {
			return nil, fmt.Errorf("telemetry: endpoint %q: the value of header %q has control characters", e.URL, name)
		}
	}
	return u, nil
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue refuses control characters other than horizontal tab.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// exporter is an OTLP exporter and what must be released after it is shut down.
type exporter struct {
	sdktrace.SpanExporter
	// closeIdle closes the HTTP exporter's idle connections; nil for gRPC, whose Shutdown
	// closes its connection.
	closeIdle func()
}

// newExporter builds an exporter for e without any network I/O (gRPC connects lazily).
//
// Every setting the OTEL_EXPORTER_OTLP_* environment variables could supply is set
// explicitly: the exporters read those variables, and an operator's collector headers or
// certificate must never reach a tenant's endpoint.
func newExporter(e Endpoint, timeout time.Duration) (exporter, error) {
	u, err := e.parse()
	if err != nil {
		return exporter{}, err
	}
	headers := maps.Clone(e.Headers)
	if headers == nil {
		headers = map[string]string{}
	}
	// Retries are off: a batch gets one attempt bounded by timeout, then the queue moves on.
	switch u.Scheme {
	case "http", "https":
		path := u.Path
		if path == "" || path == "/" {
			path = DefaultTracesPath
		}
		tr := &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   timeout,
			ResponseHeaderTimeout: timeout,
			ForceAttemptHTTP2:     true,
			// One goroutine exports for an endpoint, so one connection is in use at a time.
			MaxIdleConns:        2,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     90 * time.Second,
		}
		opts := []otlptracehttp.Option{
			otlptracehttp.WithHTTPClient(&http.Client{Transport: tr, Timeout: timeout}),
			otlptracehttp.WithEndpoint(u.Host),
			otlptracehttp.WithURLPath(path),
			otlptracehttp.WithHeaders(headers),
			otlptracehttp.WithTimeout(timeout),
			otlptracehttp.WithCompression(otlptracehttp.NoCompression),
			otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}),
		}
		if u.Scheme == "http" {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		exp, err := otlptrace.New(context.Background(), otlptracehttp.NewClient(opts...))
		if err != nil {
			tr.CloseIdleConnections()
			return exporter{}, fmt.Errorf("telemetry: endpoint %q: %w", e.URL, err)
		}
		return exporter{SpanExporter: exp, closeIdle: tr.CloseIdleConnections}, nil
	default: // grpc, grpcs
		creds := insecure.NewCredentials()
		if u.Scheme == "grpcs" {
			creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
		}
		exp, err := otlptrace.New(context.Background(), otlptracegrpc.NewClient(
			otlptracegrpc.WithEndpoint(u.Host),
			otlptracegrpc.WithTLSCredentials(creds),
			otlptracegrpc.WithHeaders(headers),
			otlptracegrpc.WithTimeout(timeout),
			otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false}),
		))
		if err != nil {
			return exporter{}, fmt.Errorf("telemetry: endpoint %q: %w", e.URL, err)
		}
		return exporter{SpanExporter: exp}, nil
	}
}
