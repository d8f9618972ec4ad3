package dispatcher

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// benchStream returns a recorded-shape stream of 200 events in the endpoint's format, one
// event per element, with the usage it reports.
func benchStream(ep wire.Endpoint) ([][]byte, attempt.Usage) {
	var evs []string
	word := func(i int) string { return fmt.Sprintf(" word%d,", i) }
	if ep == wire.ChatCompletions {
		chunk := func(delta, finish string) string {
			return `data: {"id":"chatcmpl-BxR3","object":"chat.completion.chunk","created":1753000001,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_34a54ae93c","choices":[{"index":0,"delta":` +
				delta + `,"logprobs":null,"finish_reason":` + finish + `}],"usage":null}` + "\n\n"
		}
		evs = append(evs, chunk(`{"role":"assistant","content":"","refusal":null}`, "null"))
		for i := range 196 {
			evs = append(evs, chunk(`{"content":"`+word(i)+`"}`, "null"))
		}
		evs = append(evs, chunk(`{}`, `"stop"`),
			`data: {"id":"chatcmpl-BxR3","object":"chat.completion.chunk","created":1753000001,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_34a54ae93c","choices":[],"usage":{"prompt_tokens":1117,"completion_tokens":196,"total_tokens":1313,"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}`+"\n\n",
			"data: [DONE]\n\n")
		return toBytes(evs), attempt.Usage{InputTokens: 1117, OutputTokens: 196, CacheReadTokens: 1024}
	}
	head := strings.SplitAfter(anthropicStreamCache, "\n\n")
	evs = append(evs, head[0], head[1], head[2])
	for i := range 194 {
		evs = append(evs, `event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"`+word(i)+`"}}`+"\n\n")
	}
	evs = append(evs, head[5], head[6], head[7])
	return toBytes(evs), attempt.Usage{InputTokens: 14 + 10240 + 2051, OutputTokens: 128, CacheReadTokens: 10240, CacheCreationTokens: 2051}
}

func toBytes(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

// eventReader hands over one prepared piece per Read, without changing them, so one set of
// pieces serves every iteration.
type eventReader struct {
	pieces [][]byte
	i, off int
}

func (r *eventReader) Read(p []byte) (int, error) {
	if r.i == len(r.pieces) {
		return 0, io.EOF
	}
	n := copy(p, r.pieces[r.i][r.off:])
	if r.off += n; r.off == len(r.pieces[r.i]) {
		r.i, r.off = r.i+1, 0
	}
	return n, nil
}

// BenchmarkSSECopy measures the passthrough lane's stream copy (copyBody with flushing) of a
// 200-event stream, with and without the usage meter. "event" reads hand over one event at
// a time, as providers flush them; "32KiB" reads hand over the stream in full buffers, the
// scanner's worst case per byte since every event then sits beside others in one piece.
// The provider and the client are in memory, so the figures are the copy loop's own cost.
//
//	go test -run x -bench SSECopy -benchmem -count 10 ./dispatcher/ > new.txt && benchstat old.txt new.txt
func BenchmarkSSECopy(b *testing.B) {
	for _, ep := range []wire.Endpoint{wire.ChatCompletions, wire.Messages} {
		events, want := benchStream(ep)
		var whole []byte
		for _, e := range events {
			whole = append(whole, e...)
		}
		var full [][]byte
		for rest := whole; len(rest) > 0; {
			n := min(len(rest), 32<<10)
			full, rest = append(full, rest[:n]), rest[n:]
		}
		for _, reads := range []struct {
			name   string
			pieces [][]byte
		}{{"event", events}, {"32KiB", full}} {
			for _, metered := range []bool{false, true} {
				name := fmt.Sprintf("%s/%d_events/reads=%s/meter=%v", ep.String(), len(events), reads.name, metered)
				b.Run(name, func(b *testing.B) {
					w := &discardWriter{h: http.Header{}}
					b.SetBytes(int64(len(whole)))
					b.ReportAllocs()
					for b.Loop() {
						var m *usageMeter
						if metered {
							m = newUsageMeter(ep, true, "", -1)
						}
						if _, err := copyBody(w, &eventReader{pieces: reads.pieces}, true, m); err != nil {
							b.Fatal(err)
						}
						if m != nil {
							var res attempt.Result
							m.finish(&res)
							if res.Usage != want {
								b.Fatalf("usage %+v, want %+v", res.Usage, want)
							}
						}
					}
				})
			}
		}
	}
}

// BenchmarkJSONCopy is BenchmarkSSECopy for a non-streamed answer: the copy, then the
// meter's read of the kept body.
func BenchmarkJSONCopy(b *testing.B) {
	body := [][]byte{[]byte(openAIChatJSON)}
	for _, metered := range []bool{false, true} {
		b.Run(fmt.Sprintf("openai/meter=%v", metered), func(b *testing.B) {
			w := &discardWriter{h: http.Header{}}
			b.SetBytes(int64(len(openAIChatJSON)))
			b.ReportAllocs()
			for b.Loop() {
				var m *usageMeter
				if metered {
					m = newUsageMeter(wire.ChatCompletions, false, "", int64(len(openAIChatJSON)))
				}
				if _, err := copyBody(w, &eventReader{pieces: body}, false, m); err != nil {
					b.Fatal(err)
				}
				if m != nil {
					var res attempt.Result
					m.finish(&res)
				}
			}
		})
	}
}

// BenchmarkPassthroughStream is the whole lane on a 200-event stream over loopback, the
// provider flushing every event and the lane flushing every read, with and without the
// meter. The unmetered run asks for the models endpoint, which the meter does not read,
// from a provider that answers every path with the same stream.
//
//	go test -run x -bench PassthroughStream -benchmem -count 10 ./dispatcher/ > new.txt && benchstat old.txt new.txt
func BenchmarkPassthroughStream(b *testing.B) {
	for _, ep := range []wire.Endpoint{wire.ChatCompletions, wire.Messages} {
		events, want := benchStream(ep)
		u := &upstream{Server: httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			for _, e := range events {
				_, _ = w.Write(e)
				w.(http.Flusher).Flush()
			}
		}))}
		b.Cleanup(u.Close)
		for _, metered := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/%d_events/meter=%v", ep.String(), len(events), metered), func(b *testing.B) {
				typ := config.ProviderOpenAI
				if ep == wire.Messages {
					typ = config.ProviderAnthropic
				}
				req := attemptTo(u, typ, "k", "m", `{"model":"m","stream":true}`)
				req.Stream = true
				if !metered {
					req.Endpoint = wire.Models
				}
				p := lane()
				w := &discardWriter{h: http.Header{}}
				b.ReportAllocs()
				for b.Loop() {
					clear(w.h)
					res := p.Do(context.Background(), req, w)
					if !res.Committed || res.Err != nil || (metered && res.Usage != want) {
						b.Fatalf("result %+v", res)
					}
				}
			})
		}
	}
}
