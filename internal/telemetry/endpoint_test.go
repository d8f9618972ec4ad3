package telemetry

import (
	"strings"
	"testing"
)

func TestEndpointValidate(t *testing.T) {
	const secret = "s3cr3t-value"
	tests := []struct {
		name    string
		ep      Endpoint
		wantErr string // "" for valid
	}{
		{"http with port", Endpoint{URL: "http://collector:4318"}, ""},
		{"http without port", Endpoint{URL: "http://collector"}, ""},
		{"https with path", Endpoint{URL: "https://otlp.example.com/api/v1/traces"}, ""},
		{"grpc", Endpoint{URL: "grpc://collector:4317"}, ""},
		{"grpcs with slash", Endpoint{URL: "grpcs://collector:4317/"}, ""},
		{"ipv6", Endpoint{URL: "grpc://[::1]:4317"}, ""},
		{"headers", Endpoint{URL: "grpc://c:4317", Headers: map[string]string{"authorization": "Bearer " + secret, "x-tab": "a\tb"}}, ""},
		{"empty", Endpoint{}, "empty"},
		{"unparsable", Endpoint{URL: "http://c:4318/%zz"}, "does not parse"},
		{"unknown scheme", Endpoint{URL: "ftp://collector:21"}, "scheme"},
		{"no scheme", Endpoint{URL: "collector:4317"}, "scheme"},
		{"credentials in URL", Endpoint{URL: "https://user:" + secret + "@collector"}, "credentials"},
		{"query", Endpoint{URL: "http://collector:4318/v1/traces?key=x"}, "query"},
		{"fragment", Endpoint{URL: "http://collector:4318/#x"}, "fragment"},
		{"no host", Endpoint{URL: "http:///v1/traces"}, "no host"},
		{"grpc without port", Endpoint{URL: "grpc://collector"}, "port"},
		{"grpc with path", Endpoint{URL: "grpc://collector:4317/v1/traces"}, "no path"},
		{"bad port", Endpoint{URL: "http://collector:99999"}, "port"},
		{"bad header name", Endpoint{URL: "http://c", Headers: map[string]string{"bad name": secret}}, "header name"},
		{"header value with newline", Endpoint{URL: "http://c", Headers: map[string]string{"x-key": secret + "\r\nx-evil: 1"}}, `header "x-key"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.ep.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("Validate() error leaks a secret: %v", err)
			}
		})
	}
}

func TestNewRejectsInvalidOptions(t *testing.T) {
	for _, o := range []Options{
		{Default: Endpoint{URL: "ftp://x"}},
		{QueueSize: -1},
		{Timeout: -1},
	} {
		if p, err := New(o); err == nil {
			_ = p.Shutdown(t.Context())
			t.Errorf("New(%+v) succeeded, want an error", o)
		}
	}
}

func TestRedact(t *testing.T) {
	msg := "failed: body: got key tenant-token and Bearer tenant-token"
	got := redact(msg, map[string]string{"authorization": "Bearer tenant-token", "x-key": "tenant-token", "empty": ""})
	if strings.Contains(got, "tenant-token") {
		t.Errorf("redact left a header value: %q", got)
	}
	long := redact(strings.Repeat("é", maxLoggedError), nil)
	if len(long) > maxLoggedError+len("…") || !strings.HasSuffix(long, "…") {
		t.Errorf("redact did not truncate: %d bytes", len(long))
	}
}
