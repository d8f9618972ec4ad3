package dispatcher

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// discardWriter is a reusable ResponseWriter that supports flushing and keeps nothing.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(int)             {}
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) Flush()                      {}

const benchResponse = `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there."},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}`

// BenchmarkPassthrough measures one non-streaming attempt through the passthrough lane over a
// pooled loopback connection, model rewrite included. Most of the time is the loopback HTTP
// round trip; allocs/op is the figure to watch (it counts the whole process, so the fake
// provider's own net/http allocations are included).
//
//	go test -run x -bench Passthrough -benchmem -count 10 ./dispatcher/ > new.txt && benchstat old.txt new.txt
func BenchmarkPassthrough(b *testing.B) {
	for _, bc := range []struct {
		name  string
		model string
		sse   bool
	}{
		{"json", "gpt-4o", false},
		{"json_rewrite", "gpt-4o-2024-08-06", false},
		{"sse", "gpt-4o", true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			// Not newUpstream: recording requests would add the recorder's allocations.
			u := &upstream{Server: httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if bc.sse {
					w.Header().Set("Content-Type", "text/event-stream")
					for range 8 {
						_, _ = io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"tok\"}}]}\n\n")
						w.(http.Flusher).Flush()
					}
					_, _ = io.WriteString(w, "data: [DONE]\n\n")
					return
				}
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, benchResponse)
			}))}
			b.Cleanup(u.Close)
			p := lane()
			req := attemptTo(u, config.ProviderOpenAI, "sk-up", bc.model,
				`{"model":"gpt-4o","stream":false,"messages":[{"role":"user","content":"Say hello."}]}`)
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				if res := p.Do(context.Background(), req, w); !res.Committed {
					b.Fatalf("result %+v", res)
				}
			}
		})
	}
}

// BenchmarkServeHTTP measures the dispatcher's own overhead per request: token verification,
// header filtering and the chain walk, with a lane that answers at once.
func BenchmarkServeHTTP(b *testing.B) {
	l := laneFunc(func(_ context.Context, _ *attempt.Request, w http.ResponseWriter) attempt.Result {
		w.WriteHeader(200)
		return attempt.Result{Status: 200, Committed: true}
	})
	s := newServer(b, l, nil, "")
	tok := sign(b, testSignKey, claims(wire.OpenAI, false, chain("oa:gpt-4o", "oa2:llama3")...))
	const body = `{"model":"gpt-4o","messages":[{"role":"user","content":"Say hello."}]}`
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body))
		r.Header.Set(wire.HeaderContext, tok)
		r.Header.Set("User-Agent", "OpenAI/Python 1.99.0")
		s.ServeHTTP(w, r)
	}
}
