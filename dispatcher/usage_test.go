package dispatcher

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/fakeprovider"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// metered is what a meter read, in a comparable form.
type metered struct {
	Usage   attempt.Usage
	Model   string
	Reasons string // FinishReasons joined with ","
}

func meteredOf(res attempt.Result) metered {
	return metered{Usage: res.Usage, Model: res.ResponseModel, Reasons: strings.Join(res.FinishReasons, ",")}
}

// piecesReader returns one piece per Read, as a provider's flushes arrive.
type piecesReader struct{ pieces [][]byte }

func (r *piecesReader) Read(p []byte) (int, error) {
	for len(r.pieces) > 0 && len(r.pieces[0]) == 0 {
		r.pieces = r.pieces[1:]
	}
	if len(r.pieces) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.pieces[0])
	r.pieces[0] = r.pieces[0][n:]
	return n, nil
}

// relay copies pieces to a client through copyBody with a meter, as the lane does, and
// returns the bytes the client got and what the meter read.
func relay(t *testing.T, ep wire.Endpoint, sse bool, pieces ...[]byte) (string, metered) {
	t.Helper()
	rec := httptest.NewRecorder()
	m := newUsageMeter(ep, sse, "", -1)
	if _, err := copyBody(rec, &piecesReader{pieces: pieces}, sse, m); err != nil {
		t.Fatalf("copyBody: %v", err)
	}
	var res attempt.Result
	m.finish(&res)
	return rec.Body.String(), meteredOf(res)
}

// checkEverySplit relays body whole, cut in two at every byte, and one byte at a time, and
// checks that the client always gets body unchanged and the meter always reads want.
func checkEverySplit(t *testing.T, ep wire.Endpoint, sse bool, body string, want metered) {
	t.Helper()
	b := []byte(body)
	check := func(how string, pieces ...[]byte) bool {
		t.Helper()
		got, m := relay(t, ep, sse, pieces...)
		if got != body {
			t.Errorf("%s: client got %q, want the provider's bytes %q", how, got, body)
			return false
		}
		if m != want {
			t.Errorf("%s: meter read %+v, want %+v", how, m, want)
			return false
		}
		return true
	}
	if !check("whole", bytes.Clone(b)) {
		return
	}
	for i := 1; i < len(b); i++ {
		if !check("cut at "+strconv.Itoa(i), bytes.Clone(b[:i]), bytes.Clone(b[i:])) {
			return
		}
	}
	var ones [][]byte
	for i := range b {
		ones = append(ones, b[i:i+1])
	}
	check("one byte at a time", ones...)
}

// Recorded provider answers, shaped as the providers send them (ids shortened).
const (
	openAIChatJSON = `{
  "id": "chatcmpl-BxR2",
  "object": "chat.completion",
  "created": 1753000000,
  "model": "gpt-4o-2024-08-06",
  "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "The \"usage\": field says \"finish_reason\": soon.", "refusal": null, "annotations": []}, "logprobs": null, "finish_reason": "stop"},
    {"index": 1, "message": {"role": "assistant", "content": "The", "refusal": null, "annotations": []}, "logprobs": null, "finish_reason": "length"}
  ],
  "usage": {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
    "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 192, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
  "service_tier": "default",
  "system_fingerprint": "fp_07871e2ad8"
}
`

	openAIStreamWithUsage = `data: {"id":"chatcmpl-BxR3","object":"chat.completion.chunk","created":1753000001,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_34a54ae93c","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-BxR3","object":"chat.completion.chunk","created":1753000001,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_34a54ae93c","choices":[{"index":0,"delta":{"content":"Say \"usage\": {\"x\":1}"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-BxR3","object":"chat.completion.chunk","created":1753000001,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_34a54ae93c","choices":[{"index":0,"delta":{"content":" done."},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-BxR3","object":"chat.completion.chunk","created":1753000001,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_34a54ae93c","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}

data: {"id":"chatcmpl-BxR3","object":"chat.completion.chunk","created":1753000001,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_34a54ae93c","choices":[],"usage":{"prompt_tokens":1117,"completion_tokens":46,"total_tokens":1163,"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}

data: [DONE]

`

	// Without stream_options.include_usage, and with two choices finishing out of order.
	openAIStreamNoUsage = `data: {"id":"chatcmpl-BxR4","object":"chat.completion.chunk","created":1753000002,"model":"gpt-4.1-2025-04-14","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null},{"index":1,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-BxR4","object":"chat.completion.chunk","created":1753000002,"model":"gpt-4.1-2025-04-14","choices":[{"index":1,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-BxR4","object":"chat.completion.chunk","created":1753000002,"model":"gpt-4.1-2025-04-14","choices":[{"index":1,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]}

data: {"id":"chatcmpl-BxR4","object":"chat.completion.chunk","created":1753000002,"model":"gpt-4.1-2025-04-14","choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-BxR4","object":"chat.completion.chunk","created":1753000002,"model":"gpt-4.1-2025-04-14","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}

data: [DONE]

`

	anthropicJSON = `{"id":"msg_01XFD","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hi! The \"usage\" is below."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":21,"cache_creation_input_tokens":1536,"cache_read_input_tokens":8192,"cache_creation":{"ephemeral_5m_input_tokens":1536,"ephemeral_1h_input_tokens":0},"output_tokens":393,"service_tier":"standard"}}`

	anthropicStreamCache = `event: message_start
data: {"type":"message_start","message":{"id":"msg_01Tm","type":"message","role":"assistant","model":"claude-haiku-4-5-20251001","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":14,"cache_creation_input_tokens":2051,"cache_read_input_tokens":10240,"cache_creation":{"ephemeral_5m_input_tokens":2051,"ephemeral_1h_input_tokens":0},"output_tokens":1,"service_tier":"standard"}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"A \"message_delta\" with \"usage\":{\"output_tokens\":999}"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" is fine."}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"output_tokens":128}}

event: message_stop
data: {"type":"message_stop"}

`

	// Newer API versions repeat the input and cache counts in message_delta; thinking tokens
	// are a part of output_tokens.
	anthropicStreamDeltaCounts = `event: message_start
data: {"type":"message_start","message":{"id":"msg_02","type":"message","role":"assistant","model":"claude-opus-4-1","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"city\":\"Paris\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":310,"cache_creation_input_tokens":40,"cache_read_input_tokens":2000,"output_tokens":77,"output_tokens_details":{"thinking_tokens":50},"server_tool_use":{"web_search_requests":0}}}

event: message_stop
data: {"type":"message_stop"}

`
)

func TestUsageMeterRecordedAnswers(t *testing.T) {
	tests := []struct {
		name string
		ep   wire.Endpoint
		sse  bool
		body string
		want metered
	}{
		{"openai chat json", wire.ChatCompletions, false, openAIChatJSON, metered{
			attempt.Usage{InputTokens: 2006, OutputTokens: 300, CacheReadTokens: 1920, ReasoningTokens: 192},
			"gpt-4o-2024-08-06", "stop,length"}},
		{"openai stream with include_usage", wire.ChatCompletions, true, openAIStreamWithUsage, metered{
			attempt.Usage{InputTokens: 1117, OutputTokens: 46, CacheReadTokens: 1024},
			"gpt-4o-mini-2024-07-18", "stop"}},
		{"openai stream without usage", wire.ChatCompletions, true, openAIStreamNoUsage, metered{
			attempt.Usage{}, "gpt-4.1-2025-04-14", "stop,tool_calls"}},
		{"anthropic json with cache", wire.Messages, false, anthropicJSON, metered{
			attempt.Usage{InputTokens: 21 + 8192 + 1536, OutputTokens: 393, CacheReadTokens: 8192, CacheCreationTokens: 1536},
			"claude-sonnet-4-5-20250929", "end_turn"}},
		{"anthropic stream with cache", wire.Messages, true, anthropicStreamCache, metered{
			attempt.Usage{InputTokens: 14 + 10240 + 2051, OutputTokens: 128, CacheReadTokens: 10240, CacheCreationTokens: 2051},
			"claude-haiku-4-5-20251001", "max_tokens"}},
		{"anthropic stream counts repeated in message_delta", wire.Messages, true, anthropicStreamDeltaCounts, metered{
			attempt.Usage{InputTokens: 310 + 2000 + 40, OutputTokens: 77, CacheReadTokens: 2000, CacheCreationTokens: 40, ReasoningTokens: 50},
			"claude-opus-4-1", "tool_use"}},
		{"anthropic stream cut after message_start", wire.Messages, true, strings.SplitAfter(anthropicStreamCache, "\n\n")[0], metered{
			attempt.Usage{InputTokens: 14 + 10240 + 2051, OutputTokens: 1, CacheReadTokens: 10240, CacheCreationTokens: 2051},
			"claude-haiku-4-5-20251001", ""}},
		{"openai stream cut inside the usage event", wire.ChatCompletions, true,
			openAIStreamWithUsage[:strings.Index(openAIStreamWithUsage, `"choices":[],"usage"`)+30], metered{
				attempt.Usage{}, "gpt-4o-mini-2024-07-18", "stop"}},
		{"anthropic stream ending in an error event", wire.Messages, true,
			strings.Join(strings.SplitAfter(anthropicStreamCache, "\n\n")[:4], "") +
				"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n", metered{
				attempt.Usage{InputTokens: 14 + 10240 + 2051, OutputTokens: 1, CacheReadTokens: 10240, CacheCreationTokens: 2051},
				"claude-haiku-4-5-20251001", ""}},
		{"openai stream ending in an error chunk", wire.ChatCompletions, true,
			strings.Join(strings.SplitAfter(openAIStreamWithUsage, "\n\n")[:3], "") +
				`data: {"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}` + "\n\n", metered{
				attempt.Usage{}, "gpt-4o-mini-2024-07-18", ""}},
		{"not json", wire.ChatCompletions, false, "<html>ok</html>", metered{}},
		{"empty", wire.Messages, false, "", metered{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkEverySplit(t, tt.ep, tt.sse, tt.body, tt.want)
			if !tt.sse {
				return
			}
			// The same stream with other line ends and field spacing reads the same.
			for how, body := range map[string]string{
				"crlf":       strings.ReplaceAll(tt.body, "\n", "\r\n"),
				"cr":         strings.ReplaceAll(tt.body, "\n", "\r"),
				"no space":   strings.NewReplacer("data: ", "data:", "event: ", "event:").Replace(tt.body),
				"multi-line": strings.ReplaceAll(tt.body, `,"`, ",\ndata: \""),
			} {
				t.Run(how, func(t *testing.T) { checkEverySplit(t, tt.ep, tt.sse, body, tt.want) })
			}
		})
	}
}

// The scanner holds at most one partial event, and a huge event that cannot carry usage
// does not stop it from reading the ones that do.
func TestUsageMeterBoundedMemory(t *testing.T) {
	huge := strings.Repeat("x", 3*maxSSEEvent)
	body := strings.Replace(anthropicStreamCache, `"text":" is fine."`, `"text":"`+huge+`"`, 1) +
		"data: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":7}}\n\n"
	var pieces [][]byte
	for b := []byte(body); len(b) > 0; {
		n := min(len(b), 16<<10)
		pieces = append(pieces, b[:n])
		b = b[n:]
	}
	m := newUsageMeter(wire.Messages, true, "", -1)
	maxHeld := 0
	for _, p := range pieces {
		m.write(p)
		maxHeld = max(maxHeld, cap(m.sse.line)+cap(m.sse.dataBuf))
	}
	var res attempt.Result
	m.finish(&res)
	if maxHeld > 3*maxSSEEvent/2 {
		t.Errorf("scanner held %d bytes at once, want at most about one event (%d)", maxHeld, maxSSEEvent)
	}
	want := attempt.Usage{InputTokens: 14 + 10240 + 2051, OutputTokens: 7, CacheReadTokens: 10240, CacheCreationTokens: 2051}
	if res.Usage != want || strings.Join(res.FinishReasons, ",") != "max_tokens" {
		t.Errorf("usage %+v reasons %v, want %+v max_tokens", res.Usage, res.FinishReasons, want)
	}
}

// A body that is not identity-encoded, or an endpoint without usage, is not metered.
func TestUsageMeterNotMetered(t *testing.T) {
	if m := newUsageMeter(wire.ChatCompletions, false, "gzip", 10); m != nil {
		t.Error("gzip body metered")
	}
	if m := newUsageMeter(wire.Models, false, "", 10); m != nil {
		t.Error("models listing metered")
	}
	if m := newUsageMeter(wire.ChatCompletions, false, "", maxMeteredBody+1); m != nil {
		t.Error("body over the cap metered")
	}
	if m := newUsageMeter(wire.ChatCompletions, false, "identity", -1); m == nil {
		t.Error("identity body not metered")
	}
}

// End to end through the lane and the fake provider, whose scripted usage includes cache
// reads and writes. The client's bytes, recorded, then go through the meter cut at every
// byte.
func TestPassthroughUsageFromFakeProvider(t *testing.T) {
	fake := fakeprovider.New(fakeprovider.Config{})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	const marker = "usage-script"
	fake.Script(marker, fakeprovider.Script{Usage: &fakeprovider.Usage{
		InputTokens: 1200, OutputTokens: 42, CacheReadTokens: 1000, CacheCreationTokens: 150}})
	u := &upstream{Server: srv}

	const (
		oaMsgs  = `"messages":[{"role":"user","content":"` + marker + `"}]`
		antMsgs = `"max_tokens":64,"messages":[{"role":"user","content":"` + marker + `"}]`
	)
	// The fake's OpenAI prompt_tokens counts cache reads and writes; it has no cache-write field.
	oaUsage := attempt.Usage{InputTokens: 2350, OutputTokens: 42, CacheReadTokens: 1000}
	antUsage := attempt.Usage{InputTokens: 2350, OutputTokens: 42, CacheReadTokens: 1000, CacheCreationTokens: 150}
	tests := []struct {
		name   string
		typ    config.ProviderType
		stream bool
		body   string
		want   metered
		// hidden: the lane asked for the stream's usage itself, so the client's bytes carry none.
		hidden bool
	}{
		{"openai json", config.ProviderOpenAI, false, `{"model":"m",` + oaMsgs + `}`, metered{oaUsage, "gpt-4o-mini", "stop"}, false},
		{"openai json tool call", config.ProviderOpenAI, false,
			`{"model":"m","tools":[{"type":"function","function":{"name":"get_weather"}}],` + oaMsgs + `}`,
			metered{oaUsage, "gpt-4o-mini", "tool_calls"}, false},
		{"openai stream with usage", config.ProviderOpenAI, true,
			`{"model":"m","stream":true,"stream_options":{"include_usage":true},` + oaMsgs + `}`, metered{oaUsage, "gpt-4o-mini", "stop"}, false},
		{"openai stream without usage", config.ProviderOpenAI, true,
			`{"model":"m","stream":true,` + oaMsgs + `}`, metered{oaUsage, "gpt-4o-mini", "stop"}, true},
		{"anthropic json", config.ProviderAnthropic, false, `{"model":"m",` + antMsgs + `}`, metered{antUsage, "claude-haiku-4-5", "end_turn"}, false},
		{"anthropic stream", config.ProviderAnthropic, true, `{"model":"m","stream":true,` + antMsgs + `}`, metered{antUsage, "claude-haiku-4-5", "end_turn"}, false},
		{"anthropic stream tool use", config.ProviderAnthropic, true,
			`{"model":"m","stream":true,"tools":[{"name":"get_weather","input_schema":{}}],` + antMsgs + `}`,
			metered{antUsage, "claude-haiku-4-5", "tool_use"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := attemptTo(u, tt.typ, "k", tt.want.Model, tt.body)
			req.Stream = tt.stream
			rec := httptest.NewRecorder()
			start := time.Now()
			res := lane().Do(context.Background(), req, rec)
			if !res.Committed || res.Status != 200 || res.Err != nil {
				t.Fatalf("result %+v", res)
			}
			if got := meteredOf(res); got != tt.want {
				t.Errorf("lane read %+v, want %+v", got, tt.want)
			}
			if res.FirstByte.Before(start) || res.Done.Before(res.FirstByte) || time.Since(res.Done) < 0 {
				t.Errorf("start %v, FirstByte %v, Done %v: want start ≤ FirstByte ≤ Done ≤ now", start, res.FirstByte, res.Done)
			}
			sse := strings.HasPrefix(rec.Header().Get("Content-Type"), "text/event-stream")
			if sse != tt.stream {
				t.Fatalf("Content-Type %q for stream=%v", rec.Header().Get("Content-Type"), tt.stream)
			}
			seen := tt.want
			if tt.hidden {
				seen.Usage = attempt.Usage{}
				if strings.Contains(rec.Body.String(), `"choices":[]`) || !strings.Contains(rec.Body.String(), "data: [DONE]") {
					t.Errorf("the client got the usage chunk it did not ask for, or lost [DONE]:\n%s", rec.Body.String())
				}
			}
			checkEverySplit(t, req.Endpoint, sse, rec.Body.String(), seen)
		})
	}
}

// A failed attempt reports no usage, but says when it ended and whether anything arrived.
func TestPassthroughUsageOfFailedAttempts(t *testing.T) {
	fake := fakeprovider.New(fakeprovider.Config{})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	fake.Script("overloaded", fakeprovider.Script{Status: 529, Usage: &fakeprovider.Usage{InputTokens: 5, OutputTokens: 5}})
	u := &upstream{Server: srv}
	start := time.Now()
	res := lane().Do(context.Background(), attemptTo(u, config.ProviderAnthropic, "k", "m",
		`{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"overloaded"}]}`), strictWriter{t})
	if res.Committed || res.Status != 529 || res.Usage != (attempt.Usage{}) || res.ResponseModel != "" || res.FinishReasons != nil {
		t.Errorf("provider error: result %+v, want uncommitted 529 without usage", res)
	}
	if res.FirstByte.Before(start) || res.Done.Before(res.FirstByte) {
		t.Errorf("provider error: FirstByte %v Done %v, want both set in order", res.FirstByte, res.Done)
	}

	srv.Close()
	res = lane().Do(context.Background(), attemptTo(u, config.ProviderOpenAI, "k", "m", `{"model":"m"}`), strictWriter{t})
	if res.Committed || res.Usage != (attempt.Usage{}) || !res.FirstByte.IsZero() || res.Done.Before(start) {
		t.Errorf("network error: result %+v, want no usage, no FirstByte, Done set", res)
	}
}

// A stream cut mid-way still reports what the provider said before the cut.
func TestPassthroughUsageOfCutStream(t *testing.T) {
	head := strings.SplitAfter(anthropicStreamCache, "\n\n")
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, strings.Join(head[:4], ""))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	req := attemptTo(u, config.ProviderAnthropic, "k", "m", `{"model":"m","stream":true}`)
	req.Stream = true
	res := lane().Do(context.Background(), req, httptest.NewRecorder())
	want := attempt.Usage{InputTokens: 14 + 10240 + 2051, OutputTokens: 1, CacheReadTokens: 10240, CacheCreationTokens: 2051}
	if !res.Committed || res.Err == nil || res.Usage != want || res.ResponseModel != "claude-haiku-4-5-20251001" || res.FinishReasons != nil {
		t.Errorf("result %+v, want committed with an error and the message_start usage %+v", res, want)
	}
	if res.FirstByte.IsZero() || res.Done.Before(res.FirstByte) {
		t.Errorf("FirstByte %v Done %v", res.FirstByte, res.Done)
	}
}

func TestUsageAdd(t *testing.T) {
	a := attempt.Usage{InputTokens: 10, OutputTokens: 2, CacheReadTokens: 3, CacheCreationTokens: 4, ReasoningTokens: 1}
	b := attempt.Usage{InputTokens: 1, OutputTokens: 20, CacheReadTokens: 30, CacheCreationTokens: 40, ReasoningTokens: 10}
	want := attempt.Usage{InputTokens: 11, OutputTokens: 22, CacheReadTokens: 33, CacheCreationTokens: 44, ReasoningTokens: 11}
	if got := a.Add(b); got != want {
		t.Errorf("Add = %+v, want %+v", got, want)
	}
}

// failingWriter is a client that left: every write fails.
type failingWriter struct{ h http.Header }

func (w *failingWriter) Header() http.Header       { return w.h }
func (w *failingWriter) WriteHeader(int)           {}
func (w *failingWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

// Bytes the provider sent are metered even when the client could not take them: the
// provider bills them all the same.
func TestUsageMeterClientGone(t *testing.T) {
	m := newUsageMeter(wire.ChatCompletions, true, "", -1)
	_, err := copyBody(&failingWriter{h: http.Header{}}, &piecesReader{pieces: [][]byte{[]byte(openAIStreamWithUsage)}}, true, m)
	if err == nil {
		t.Fatal("copyBody to a gone client reported no error")
	}
	var res attempt.Result
	m.finish(&res)
	if want := (attempt.Usage{InputTokens: 1117, OutputTokens: 46, CacheReadTokens: 1024}); res.Usage != want {
		t.Errorf("usage %+v, want %+v", res.Usage, want)
	}
}

// Responses and embeddings answers are metered from the provider's own figures; a recorded
// Responses stream is read the same at every split.
func TestMeterResponsesAndEmbeddings(t *testing.T) {
	rec, err := os.ReadFile("../extproc/content/testdata/openai_responses.sse")
	if err != nil {
		t.Fatal(err)
	}
	model := regexp.MustCompile(`"model":"([^"]+)"`).FindStringSubmatch(string(rec))[1]
	want := metered{attempt.Usage{InputTokens: 1893, OutputTokens: 211, CacheReadTokens: 1536, ReasoningTokens: 128}, model, "completed"}
	checkEverySplit(t, wire.Responses, true, string(rec), want)

	json := `{"id":"resp_1","object":"response","model":"gpt-5","status":"incomplete","output":[],` +
		`"usage":{"input_tokens":10,"input_tokens_details":{"cached_tokens":4},"output_tokens":3,"output_tokens_details":{"reasoning_tokens":1},"total_tokens":13}}`
	checkEverySplit(t, wire.Responses, false, json,
		metered{attempt.Usage{InputTokens: 10, OutputTokens: 3, CacheReadTokens: 4, ReasoningTokens: 1}, "gpt-5", "incomplete"})

	emb := `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":7,"total_tokens":7}}`
	checkEverySplit(t, wire.Embeddings, false, emb, metered{attempt.Usage{InputTokens: 7}, "text-embedding-3-small", ""})
}
