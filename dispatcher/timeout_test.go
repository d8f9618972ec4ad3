package dispatcher

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/internal/config"
)

// A provider that sends nothing before the first-byte timeout (the dispatcher's, around
// any lane) fails the attempt as a timeout, retryable, with nothing written to the client.
func TestPassthroughFirstByteTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer u.Close()
	req := attemptTo(u, config.ProviderOpenAI, "k", "m", `{"model":"m"}`)
	req.Provider.Timeouts = config.Timeouts{FirstByteMS: 50}
	rec := httptest.NewRecorder()
	s := newServer(t, nil, nil, "")
	p, _ := s.breakers.Allow("p")
	res := s.attempt(context.Background(), lane(), req, rec, p)
	if res.Committed || !res.Retryable || !res.Timeout || rec.Body.Len() != 0 {
		t.Fatalf("result %+v, client got %q", res, rec.Body)
	}
	if fallbackReason(&res) != "timeout" {
		t.Errorf("reason %q", fallbackReason(&res))
	}
}

// A stream that falls silent past the idle timeout ends with the client's error event,
// and the attempt says it timed out.
func TestPassthroughStreamIdleTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		_, _ = w.Write([]byte("data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n"))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer u.Close()
	req := attemptTo(u, config.ProviderOpenAI, "k", "m", `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`)
	req.Stream = true
	req.Provider.Timeouts = config.Timeouts{StreamIdleMS: 50}
	rec := httptest.NewRecorder()
	res := lane().Do(context.Background(), req, rec)
	if !res.Committed || !res.Timeout || res.Err == nil {
		t.Fatalf("result %+v", res)
	}
	if body := rec.Body.String(); !strings.Contains(body, "hi") || !strings.Contains(body, "upstream_stream_error") {
		t.Errorf("client got %q: want the first event, then an error event", body)
	}
}

// A stream cut in the middle of an event ends with the error event after the last whole
// event: the half event is never relayed, so the client's parser reads the error.
func TestPassthroughCutMidEvent(t *testing.T) {
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		_, _ = w.Write([]byte("data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"choices\":[{\"del"))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	req := attemptTo(u, config.ProviderOpenAI, "k", "m", `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`)
	req.Stream = true
	rec := httptest.NewRecorder()
	res := lane().Do(context.Background(), req, rec)
	body := rec.Body.String()
	if !res.Committed || res.Err == nil || strings.Contains(body, `{"del"`) || strings.Contains(body, `[{"del\n`) || !strings.Contains(body, "upstream_stream_error") {
		t.Fatalf("result %+v, client got %q", res, body)
	}
	if !strings.HasPrefix(body, "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"error\"") {
		t.Errorf("client got %q", body)
	}
}

// An error status whose body then stalls fails the attempt as a timeout, retryable.
func TestPassthroughStalledErrorBody(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(503)
		_, _ = w.Write([]byte(`{"error":`))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	req := attemptTo(u, config.ProviderOpenAI, "k", "m", `{"model":"m"}`)
	req.Provider.Timeouts = config.Timeouts{StreamIdleMS: 50}
	res := lane().Do(context.Background(), req, httptest.NewRecorder())
	if res.Committed || !res.Retryable || !res.Timeout {
		t.Fatalf("result %+v", res)
	}
}
