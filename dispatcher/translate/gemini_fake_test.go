package translate

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// geminiCall is one request as the fake Gemini API saw it.
type geminiCall struct {
	Model  string // the model in the path
	Stream bool   // streamGenerateContent?alt=sse
	Path   string
	Query  url.Values
	Header http.Header
	Body   map[string]any
	Raw    []byte
}

// fakeGemini is a scripted Gemini API (generativelanguage, v1beta) under an optional path
// prefix. It enforces what every generateContent request must carry, as Gemini does: POST,
// the API key in x-goog-api-key (never in the URL), alt=sse on streams, a JSON body with
// non-empty contents of user and model turns, each with parts; a systemInstruction with
// parts; function declarations with a name. A request breaking a rule fails the test and
// gets Gemini's 400. Anything else is answered by reply.
type fakeGemini struct {
	*httptest.Server
	t      *testing.T
	prefix string

	mu    sync.Mutex
	calls []geminiCall
	reply http.HandlerFunc
}

var geminiPathRE = regexp.MustCompile(`^/v1beta/models/([^/:]+):(generateContent|streamGenerateContent)$`)

func newFakeGemini(t *testing.T, prefix string, reply http.HandlerFunc) *fakeGemini {
	t.Helper()
	f := &fakeGemini{t: t, prefix: prefix, reply: reply}
	f.Server = httptest.NewServer(f)
	t.Cleanup(f.Close)
	return f
}

// baseURL is the provider base URL an operator would configure for this fake.
func (f *fakeGemini) baseURL() string { return f.URL + f.prefix }

func (f *fakeGemini) setReply(h http.HandlerFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reply = h
}

func (f *fakeGemini) last(t *testing.T) geminiCall {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		t.Fatal("the fake Gemini API received no request")
	}
	return f.calls[len(f.calls)-1]
}

func (f *fakeGemini) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	call := geminiCall{Path: r.URL.Path, Query: r.URL.Query(), Header: r.Header.Clone(), Raw: raw}
	_ = json.Unmarshal(raw, &call.Body)
	m := geminiPathRE.FindStringSubmatch(strings.TrimPrefix(r.URL.Path, f.prefix))
	if m != nil {
		call.Model, call.Stream = m[1], m[2] == "streamGenerateContent"
	}
	f.mu.Lock()
	f.calls = append(f.calls, call)
	reply := f.reply
	f.mu.Unlock()

	if r.Method != http.MethodPost || m == nil || !strings.HasPrefix(r.URL.Path, f.prefix) {
		f.t.Errorf("fake Gemini: %s %s is not a generateContent call", r.Method, r.URL)
		geminiError(http.StatusNotFound, "NOT_FOUND", "Not found.")(w, r)
		return
	}
	if call.Query.Has("key") || r.Header.Get("Authorization") != "" {
		f.t.Errorf("fake Gemini: credential in the URL or Authorization: %s", r.URL)
	}
	if r.Header.Get("x-goog-api-key") != testKey {
		geminiError(http.StatusBadRequest, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.")(w, r)
		return
	}
	if call.Stream != (call.Query.Get("alt") == "sse") {
		f.t.Errorf("fake Gemini: stream %v with alt=%q", call.Stream, call.Query.Get("alt"))
	}
	if err := checkGenerateContent(call.Body); err != nil {
		f.t.Errorf("fake Gemini: %v: %s", err, raw)
		geminiError(http.StatusBadRequest, "INVALID_ARGUMENT", err.Error())(w, r)
		return
	}
	reply(w, r)
}

// checkGenerateContent applies Gemini's request rules the lane must never break.
func checkGenerateContent(b map[string]any) error {
	contents, _ := b["contents"].([]any)
	if len(contents) == 0 {
		return fmt.Errorf("contents is empty")
	}
	for i, c := range contents {
		if role := get(c, "role"); role != "user" && role != "model" {
			return fmt.Errorf("contents[%d].role %v", i, role)
		}
		if parts, _ := get(c, "parts").([]any); len(parts) == 0 {
			return fmt.Errorf("contents[%d] has no parts", i)
		}
	}
	if si, ok := b["systemInstruction"]; ok {
		if parts, _ := get(si, "parts").([]any); len(parts) == 0 {
			return fmt.Errorf("systemInstruction has no parts")
		}
	}
	tools, _ := b["tools"].([]any)
	for i, tl := range tools {
		decls, _ := get(tl, "functionDeclarations").([]any)
		for j, d := range decls {
			if name, _ := get(d, "name").(string); name == "" {
				return fmt.Errorf("tools[%d].functionDeclarations[%d] has no name", i, j)
			}
		}
	}
	return nil
}

// geminiJSON answers a generateContent call with one GenerateContentResponse.
func geminiJSON(body string) http.HandlerFunc {
	return jsonReply(http.StatusOK, body)
}

// geminiSSE answers a streamGenerateContent call: each chunk a GenerateContentResponse in
// one "data:" event, as Gemini frames them (CRLF line ends), flushed one by one. With
// abort set the connection is torn down after the last chunk.
func geminiSSE(chunks []string, abort bool) http.HandlerFunc {
	frames := make([]string, len(chunks))
	for i, c := range chunks {
		frames[i] = "data: " + c + "\r\n\r\n"
	}
	return sseReply(frames, abort)
}

// geminiError answers with Gemini's error envelope.
func geminiError(status int, name, message string) http.HandlerFunc {
	return jsonReply(status, fmt.Sprintf(`{"error":{"code":%d,"message":%q,"status":%q}}`, status, message, name))
}

// geminiRequest is an attempt at a Gemini provider for a client of the given format and
// endpoint.
func geminiRequest(format wire.Format, ep wire.Endpoint, baseURL string, stream bool, body string) *attempt.Request {
	req := request(format, config.ProviderGemini, baseURL, stream, body)
	req.Endpoint = ep
	return req
}
