// Package fakeprovider is a scriptable fake LLM provider that speaks the OpenAI (chat
// completions, Responses, embeddings) and Anthropic messages wire formats faithfully
// enough for the official SDKs. The end-to-end tests drive it in-process, and
// `sluice serve --demo` uses it as the built-in demo provider.
//
// Endpoints:
//   - POST /v1/chat/completions (OpenAI chat, streamed or not);
//   - POST /v1/responses (OpenAI Responses, streamed or not; function and custom tools);
//     GET /v1/responses, Codex's WebSocket-mode probe, answers 426 so it falls back to HTTP;
//   - POST /v1/responses/compact (the compaction endpoint Codex uses: the request's user
//     messages, then one compaction item with opaque encrypted_content);
//   - POST /v1/embeddings (string, string array, token array or token arrays as input;
//     EmbeddingDims-long unit vectors derived from a hash of each input, or `dimensions`;
//     encoding_format "base64" sends little-endian float32 bytes);
//   - POST /v1/messages (Anthropic, any query string) and POST /v1/messages/count_tokens;
//   - GET /v1/models and GET /v1/models/{id} (OpenAI shape, or Anthropic shape when an
//     anthropic-version header is present).
//
// Behaviour without a script:
//   - the answer text is DefaultText, echoed with the request's model;
//   - when the request declares tools (and tool_choice is not "none"), the answer is a call
//     to the first tool (or the tool named by tool_choice) with arguments ToolArguments
//     (a Responses custom tool gets ToolArguments as its input);
//   - text is streamed in pieces of ChunkSize bytes (never splitting a UTF-8 rune), tool
//     arguments in pieces of ArgChunkSize bytes;
//   - usage is deterministic: input tokens = ceil(len(body)/4) (at least 1), output tokens =
//     the number of content pieces (text pieces + argument pieces; for compaction, the
//     pieces of the summary text), cache tokens = 0. Non-streamed and streamed answers
//     report the same numbers. OpenAI input counts (prompt_tokens, input_tokens) include
//     the cache tokens of a scripted Usage; embeddings report Usage.InputTokens.
//
// A Script, selected by a marker found in the raw request body, overrides any of this.
package fakeprovider

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/gjson"
)

// DefaultText is the answer text when no script overrides it.
const DefaultText = "Hello from the Sluice demo provider."

// ToolArguments is the JSON arguments of every tool call the fake makes.
const ToolArguments = `{"city":"Paris","unit":"celsius"}`

// DefaultToolName is the tool called when Script.ToolCall forces a call and the request
// declares no tool.
const DefaultToolName = "get_weather"

// Chunk sizes of streamed content, in bytes.
const (
	ChunkSize    = 5
	ArgChunkSize = 6
)

// DefaultMaxRecorded is how many requests are kept when Config.MaxRecorded is 0.
const DefaultMaxRecorded = 10000

const maxBody = 64 << 20

// Config configures a Server.
type Config struct {
	OpenAIKey    string // expected OpenAI credential; empty accepts any (or none)
	AnthropicKey string // expected Anthropic credential; empty accepts any (or none)
	Logger       *slog.Logger
	// MaxRecorded bounds the recorded requests (oldest dropped first): 0 means
	// DefaultMaxRecorded, negative records nothing (long-running demo use).
	MaxRecorded int
}

// Usage is token usage reported by the fake.
type Usage struct {
	InputTokens         int // Anthropic input_tokens; OpenAI prompt_tokens adds CacheReadTokens
	OutputTokens        int
	CacheReadTokens     int
	CacheCreationTokens int
}

// Script changes how the fake answers requests whose raw body contains a marker.
type Script struct {
	// Status: a non-2xx status answers with a provider-format error body (message = Text
	// when set); a 2xx status replaces 200 on success; 0 means 200.
	Status int
	// Header holds extra response headers (e.g. retry-after), on errors too.
	Header map[string]string
	// FirstByteDelay is waited before the status line (cancelled with the request).
	FirstByteDelay time.Duration
	// EventDelay is waited between SSE events (cancelled with the request).
	EventDelay time.Duration
	// CutAfterEvents > 0: a stream is aborted (no clean end) right after that many SSE
	// events (a stream with fewer events ends normally); a non-streamed answer sends its
	// status and half of its body, then aborts.
	CutAfterEvents int
	Text           string // overrides DefaultText; with a tool call, also sent as text first
	ToolCall       bool   // answer with a tool call even when the request declares no tools
	// Reset closes the connection without any response (after FirstByteDelay): what a
	// crashed or overloaded upstream's load balancer does.
	Reset bool
	Usage *Usage // overrides the deterministic usage
}

// Recorded is one request received by the fake.
type Recorded struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Body                   []byte
}

type scripted struct {
	marker string
	sc     Script
}

// Server is the fake provider; it is an http.Handler and safe for concurrent use.
type Server struct {
	cfg Config
	log *slog.Logger
	max int

	mu      sync.Mutex
	scripts []scripted // registration order; the newest matching marker wins
	records []Recorded
}

// New returns a fake provider.
func New(cfg Config) *Server {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	limit := cfg.MaxRecorded
	if limit == 0 {
		limit = DefaultMaxRecorded
	}
	return &Server{cfg: cfg, log: log, max: limit}
}

// Script makes requests whose raw body contains marker answer according to sc until the
// marker is cleared (Clear, Reset, or Script with a zero Script). Registering a marker
// again replaces its script. When several markers match, the newest registration wins.
func (s *Server) Script(marker string, sc Script) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clearLocked(marker)
	if marker == "" || isZero(sc) {
		return
	}
	s.scripts = append(s.scripts, scripted{marker: marker, sc: sc})
}

// Clear removes the script registered for marker.
func (s *Server) Clear(marker string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clearLocked(marker)
}

func (s *Server) clearLocked(marker string) {
	for i, e := range s.scripts {
		if e.marker == marker {
			s.scripts = append(s.scripts[:i:i], s.scripts[i+1:]...)
			return
		}
	}
}

func isZero(sc Script) bool {
	return sc.Status == 0 && len(sc.Header) == 0 && sc.FirstByteDelay == 0 &&
		sc.EventDelay == 0 && sc.CutAfterEvents == 0 && sc.Text == "" && !sc.ToolCall &&
		sc.Usage == nil && !sc.Reset
}

// Requests returns copies of the recorded requests whose body contains marker ("" = all),
// in arrival order.
func (s *Server) Requests(marker string) []Recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Recorded
	for _, r := range s.records {
		if marker == "" || bytes.Contains(r.Body, []byte(marker)) {
			out = append(out, Recorded{Method: r.Method, Path: r.Path, RawQuery: r.RawQuery,
				Header: r.Header.Clone(), Body: bytes.Clone(r.Body)})
		}
	}
	return out
}

// Reset forgets all scripts and recorded requests.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scripts = nil
	s.records = nil
}

func (s *Server) record(r *http.Request, body []byte) Script {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.max > 0 {
		if len(s.records) >= s.max {
			n := copy(s.records, s.records[len(s.records)-s.max+1:])
			clear(s.records[n:])
			s.records = s.records[:n]
		}
		h := r.Header.Clone()
		if r.Host != "" {
			h.Set("Host", r.Host)
		}
		s.records = append(s.records, Recorded{Method: r.Method, Path: r.URL.Path,
			RawQuery: r.URL.RawQuery, Header: h, Body: body})
	}
	for i := len(s.scripts) - 1; i >= 0; i-- {
		if bytes.Contains(body, []byte(s.scripts[i].marker)) {
			return s.scripts[i].sc
		}
	}
	return Script{}
}

// dialect is the wire format of an endpoint.
type dialect int

const (
	openAI dialect = iota
	anthropic
)

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	d := openAI
	if strings.HasPrefix(r.URL.Path, "/v1/messages") ||
		(!openAIOnly(r.URL.Path) && r.Header.Get("anthropic-version") != "") {
		d = anthropic
	}
	if err != nil {
		writeError(w, d, http.StatusRequestEntityTooLarge, "request body too large or unreadable")
		return
	}
	sc := s.record(r, body)
	s.log.Debug("fake provider request", "method", r.Method, "path", r.URL.Path, "bytes", len(body))

	var route func(http.ResponseWriter, *http.Request, []byte, Script)
	method := http.MethodPost
	switch p := r.URL.Path; {
	case p == "/v1/chat/completions":
		route = s.chatCompletions
	case p == "/v1/responses" && r.Method == http.MethodGet:
		method, route = http.MethodGet, s.responsesWebSocket
	case p == "/v1/responses":
		route = s.responses
	case p == "/v1/responses/compact":
		route = s.compact
	case p == "/v1/embeddings":
		route = s.embeddings
	case p == "/v1/messages":
		route = s.messages
	case p == "/v1/messages/count_tokens":
		route = s.countTokens
	case p == "/v1/models" || strings.HasPrefix(p, "/v1/models/"):
		method, route = http.MethodGet, s.models
	default:
		writeError(w, d, http.StatusNotFound, "unknown endpoint "+p)
		return
	}
	if r.Method != method {
		writeError(w, d, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
		return
	}
	if !s.authorized(r, d) {
		msg := "Incorrect API key provided."
		if d == anthropic {
			msg = "invalid x-api-key"
		}
		writeError(w, d, http.StatusUnauthorized, msg)
		return
	}
	if !wait(r.Context(), sc.FirstByteDelay) {
		return
	}
	if sc.Reset {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				if tc, ok := conn.(interface{ SetLinger(int) error }); ok {
					_ = tc.SetLinger(0) // RST, not FIN
				}
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	}
	for k, v := range sc.Header {
		w.Header().Set(k, v)
	}
	if sc.Status != 0 && (sc.Status < 200 || sc.Status > 299) {
		msg := sc.Text
		if msg == "" {
			msg = fmt.Sprintf("fake provider scripted error (status %d)", sc.Status)
		}
		writeError(w, d, sc.Status, msg)
		return
	}
	route(w, r, body, sc)
}

// openAIOnly reports whether path is an endpoint only OpenAI has, whose errors are
// OpenAI-shaped whatever the headers say.
func openAIOnly(path string) bool {
	switch path {
	case "/v1/chat/completions", "/v1/responses", "/v1/responses/compact", "/v1/embeddings":
		return true
	}
	return false
}

func (s *Server) authorized(r *http.Request, d dialect) bool {
	want := s.cfg.OpenAIKey
	if d == anthropic {
		want = s.cfg.AnthropicKey
	}
	if want == "" {
		return true
	}
	if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && bearer == want {
		return true
	}
	return d == anthropic && r.Header.Get("x-api-key") == want
}

// wait sleeps for d unless ctx ends first; it reports whether to go on.
func wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func writeError(w http.ResponseWriter, d dialect, status int, msg string) {
	var body any
	if d == anthropic {
		w.Header().Set("request-id", newID("req_"))
		body = obj{"type", "error",
			"error", obj{"type", anthropicErrorType(status), "message", msg},
			"request_id", w.Header().Get("request-id")}
	} else {
		w.Header().Set("x-request-id", newID("req_"))
		typ, code := openAIErrorType(status)
		body = obj{"error", obj{"message", msg, "type", typ,
			"param", nil, "code", code}}
	}
	writeJSON(w, status, body)
}

func openAIErrorType(status int) (typ string, code any) {
	switch {
	case status == http.StatusUnauthorized:
		return "invalid_request_error", "invalid_api_key"
	case status == http.StatusForbidden:
		return "invalid_request_error", "unsupported_country_region_territory"
	case status == http.StatusNotFound:
		return "invalid_request_error", "unknown_url"
	case status == http.StatusTooManyRequests:
		return "requests", "rate_limit_exceeded"
	case status >= 500:
		return "server_error", nil
	}
	return "invalid_request_error", nil
}

func anthropicErrorType(status int) string {
	switch status {
	case 400:
		return "invalid_request_error"
	case 401:
		return "authentication_error"
	case 402:
		return "billing_error"
	case 403:
		return "permission_error"
	case 404:
		return "not_found_error"
	case 413:
		return "request_too_large"
	case 429:
		return "rate_limit_error"
	case 504:
		return "timeout_error"
	case 529:
		return "overloaded_error"
	}
	if status < 500 {
		return "invalid_request_error"
	}
	return "api_error"
}

// obj is a JSON object literal that keeps its key order: key, value, key, value, ...
type obj []any

// set replaces the value of key, or appends the pair.
func (o *obj) set(key string, v any) {
	for i := 0; i+1 < len(*o); i += 2 {
		if (*o)[i] == key {
			(*o)[i+1] = v
			return
		}
	}
	*o = append(*o, key, v)
}

// MarshalJSON implements json.Marshaler.
func (o obj) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i := 0; i+1 < len(o); i += 2 {
		if i > 0 {
			buf.WriteByte(',')
		}
		k, _ := json.Marshal(o[i].(string))
		v, err := json.Marshal(o[i+1])
		if err != nil {
			return nil, err
		}
		buf.Write(k)
		buf.WriteByte(':')
		buf.Write(v)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeAnswer writes a successful non-streamed JSON answer, honouring CutAfterEvents.
func writeAnswer(w http.ResponseWriter, sc Script, v any) {
	status := sc.Status
	if status == 0 {
		status = http.StatusOK
	}
	if sc.CutAfterEvents <= 0 {
		writeJSON(w, status, v)
		return
	}
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b[:len(b)/2])
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	panic(http.ErrAbortHandler)
}

func newID(prefix string) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, 24)
	for i := range b {
		b[i] = alphabet[rand.IntN(len(alphabet))]
	}
	return prefix + string(b)
}

// split cuts s into pieces of at most n bytes without splitting a UTF-8 rune.
func split(s string, n int) []string {
	var out []string
	for len(s) > 0 {
		end := min(n, len(s))
		for end < len(s) && end > 0 && !isRuneStart(s[end]) {
			end--
		}
		if end == 0 { // a rune longer than n
			end = n
			for end < len(s) && !isRuneStart(s[end]) {
				end++
			}
		}
		out = append(out, s[:end])
		s = s[end:]
	}
	return out
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// answer is what the fake decided to say.
type answer struct {
	text      string   // text content ("" with a tool call unless scripted)
	pieces    []string // text pieces
	tool      string   // tool name, "" for none
	toolID    string
	argPieces []string
	usage     Usage
}

// plan decides the answer for a request body. tools lists the declared tool names;
// toolChoice is "none", "" or a forced tool name ("*" = any/required).
//
// After a tool result the fake answers in text unless a tool is forced, as a model would once
// it has what it asked for: an agent (Claude Code, Codex) against the demo provider then ends
// its turn instead of calling the tool forever.
func plan(body []byte, sc Script, tools []string, toolChoice, toolPrefix string) answer {
	var a answer
	forced := toolChoice != "" && toolChoice != "none" && toolChoice != "auto"
	if sc.ToolCall || (len(tools) > 0 && toolChoice != "none" && (forced || !afterToolResult(body))) {
		a.tool = DefaultToolName
		if len(tools) > 0 {
			a.tool = tools[0]
		}
		if toolChoice != "" && toolChoice != "none" && toolChoice != "*" {
			a.tool = toolChoice
		}
		a.toolID = newID(toolPrefix)
		a.argPieces = split(ToolArguments, ArgChunkSize)
		a.text = sc.Text
	} else {
		a.text = DefaultText
		if sc.Text != "" {
			a.text = sc.Text
		}
	}
	a.pieces = split(a.text, ChunkSize)
	a.usage = Usage{InputTokens: max(1, (len(body)+3)/4), OutputTokens: len(a.pieces) + len(a.argPieces)}
	if sc.Usage != nil {
		a.usage = *sc.Usage
	}
	return a
}

// sse writes server-sent events, flushing each one, and aborts the stream after
// Script.CutAfterEvents events.
type sse struct {
	w      http.ResponseWriter
	ctx    context.Context
	sc     Script
	events int
	failed bool
}

func startSSE(w http.ResponseWriter, r *http.Request, sc Script) *sse {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	status := sc.Status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	return &sse{w: w, ctx: r.Context(), sc: sc}
}

// send writes one event (no "event:" line when event is ""); it reports whether the
// stream goes on.
func (s *sse) send(event string, data any) bool {
	if s.failed {
		return false
	}
	if s.events > 0 && !wait(s.ctx, s.sc.EventDelay) {
		s.failed = true
		return false
	}
	var buf bytes.Buffer
	if event != "" {
		buf.WriteString("event: " + event + "\n")
	}
	buf.WriteString("data: ")
	switch d := data.(type) {
	case string:
		buf.WriteString(d)
	default:
		b, _ := json.Marshal(d)
		buf.Write(b)
	}
	buf.WriteString("\n\n")
	if _, err := s.w.Write(buf.Bytes()); err != nil {
		s.failed = true
		return false
	}
	if f, ok := s.w.(http.Flusher); ok {
		f.Flush()
	}
	s.events++
	if s.sc.CutAfterEvents > 0 && s.events >= s.sc.CutAfterEvents {
		panic(http.ErrAbortHandler)
	}
	return s.ctx.Err() == nil
}

// afterToolResult reports whether the conversation's last turn hands back a tool's result:
// an OpenAI chat "tool" message, an Anthropic user turn with a tool_result block, or a
// Responses function_call_output or custom_tool_call_output item.
func afterToolResult(body []byte) bool {
	if last := gjson.GetBytes(body, "messages.@reverse.0"); last.Exists() {
		if last.Get("role").Str == "tool" {
			return true
		}
		found := false
		last.Get("content").ForEach(func(_, b gjson.Result) bool {
			found = b.Get("type").Str == "tool_result"
			return !found
		})
		return found
	}
	switch gjson.GetBytes(body, "input.@reverse.0.type").Str {
	case "function_call_output", "custom_tool_call_output":
		return true
	}
	return false
}
