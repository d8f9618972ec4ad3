package fakeprovider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestScriptedErrors(t *testing.T) {
	fake, ts := newTest(t)
	fake.Script("MARK", Script{Status: 429, Header: map[string]string{"retry-after": "7"}})
	resp := post(t, t.Context(), ts.URL+"/v1/chat/completions", oa(""), oaAuth()...)
	m := decode(t, resp)
	if resp.StatusCode != 429 || resp.Header.Get("retry-after") != "7" || get(m, "error", "code") != "rate_limit_exceeded" {
		t.Fatalf("openai 429: %d %v %v", resp.StatusCode, resp.Header, m)
	}
	fake.Script("MARK", Script{Status: 529, Text: "Overloaded"})
	resp = post(t, t.Context(), ts.URL+"/v1/messages", an(""), anAuth()...)
	m = decode(t, resp)
	if resp.StatusCode != 529 || m["type"] != "error" || get(m, "error", "type") != "overloaded_error" || get(m, "error", "message") != "Overloaded" {
		t.Fatalf("anthropic 529: %d %v", resp.StatusCode, m)
	}
	fake.Clear("MARK")
	if resp := post(t, t.Context(), ts.URL+"/v1/messages", an(""), anAuth()...); resp.StatusCode != 200 {
		t.Fatalf("after Clear: %d", resp.StatusCode)
	}
}

func TestScriptedAnswer(t *testing.T) {
	fake, ts := newTest(t)
	u := &Usage{InputTokens: 11, OutputTokens: 22, CacheReadTokens: 33, CacheCreationTokens: 44}
	fake.Script("MARK", Script{Text: "Bonjour, ça va ?", Usage: u, ToolCall: true})
	m := decode(t, post(t, t.Context(), ts.URL+"/v1/messages", an(""), anAuth()...))
	if get(m, "content", 0, "text") != "Bonjour, ça va ?" || get(m, "content", 1, "name") != DefaultToolName ||
		num(get(m, "usage", "input_tokens")) != 11 || num(get(m, "usage", "cache_read_input_tokens")) != 33 ||
		num(get(m, "usage", "cache_creation_input_tokens")) != 44 || num(get(m, "usage", "output_tokens")) != 22 {
		t.Fatalf("scripted message %v", m)
	}
	m = decode(t, post(t, t.Context(), ts.URL+"/v1/chat/completions", oa(""), oaAuth()...))
	if num(get(m, "usage", "prompt_tokens")) != 11+33+44 || num(get(m, "usage", "prompt_tokens_details", "cached_tokens")) != 33 ||
		get(m, "choices", 0, "message", "tool_calls", 0, "function", "name") != DefaultToolName {
		t.Fatalf("scripted completion %v", m)
	}
}

func TestFirstByteDelayAndCancel(t *testing.T) {
	fake, ts := newTest(t)
	fake.Script("MARK", Script{FirstByteDelay: 150 * time.Millisecond})
	start := time.Now()
	post(t, t.Context(), ts.URL+"/v1/chat/completions", oa(""), oaAuth()...)
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("answered after %v", d)
	}

	// A cancelled client ends the handler promptly, during the delay and mid-stream.
	done := make(chan struct{}, 2)
	ts2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { done <- struct{}{} }()
		fake.ServeHTTP(w, r)
	}))
	defer ts2.Close()
	for _, sc := range []Script{{FirstByteDelay: time.Hour}, {EventDelay: time.Hour}} {
		fake.Script("MARK", sc)
		ctx, cancel := context.WithCancel(t.Context())
		go func() { time.Sleep(50 * time.Millisecond); cancel() }()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts2.URL+"/v1/chat/completions", strings.NewReader(oa(`,"stream":true`)))
		req.Header.Set("Authorization", "Bearer "+oaKey)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("handler still running after client cancel (%+v)", sc)
		}
	}
}

func TestCutAfterEvents(t *testing.T) {
	fake, ts := newTest(t)
	fake.Script("MARK", Script{CutAfterEvents: 3})
	for _, c := range []struct {
		path, body string
		hdr        []string
	}{
		{"/v1/chat/completions", oa(`,"stream":true`), oaAuth()},
		{"/v1/messages", an(`,"stream":true`), anAuth()},
	} {
		resp := post(t, t.Context(), ts.URL+c.path, c.body, c.hdr...)
		evs, err := readSSE(resp.Body)
		if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("%s: read error %v, want unexpected EOF", c.path, err)
		}
		if len(evs) != 3 {
			t.Fatalf("%s: %d events before the cut", c.path, len(evs))
		}
	}
	resp := post(t, t.Context(), ts.URL+"/v1/messages", an(""), anAuth()...)
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatal("non-streamed cut: body read without error")
	}
}

func TestRecordingAndConcurrentScripts(t *testing.T) {
	fake, ts := newTest(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			marker := fmt.Sprintf("nonce-%d-", i)
			fake.Script(marker, Script{Text: "answer " + marker})
			for j := range 3 {
				body := fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":"%s %d"}]}`, marker, j)
				req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/chat/completions?x=1", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+oaKey)
				req.Header.Set("X-Test", marker)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				var m map[string]any
				err = json.NewDecoder(resp.Body).Decode(&m)
				resp.Body.Close()
				if err != nil || get(m, "choices", 0, "message", "content") != "answer "+marker {
					t.Errorf("%s got %v (%v)", marker, m, err)
				}
			}
		}()
	}
	wg.Wait()
	for i := range 8 {
		marker := fmt.Sprintf("nonce-%d-", i)
		recs := fake.Requests(marker)
		if len(recs) != 3 {
			t.Fatalf("%s: %d records", marker, len(recs))
		}
		for j, r := range recs {
			if r.Method != "POST" || r.Path != "/v1/chat/completions" || r.RawQuery != "x=1" || r.Header.Get("X-Test") != marker ||
				!strings.Contains(string(r.Body), fmt.Sprintf("%s %d", marker, j)) {
				t.Fatalf("record %d: %+v", j, r)
			}
		}
	}
	if n := len(fake.Requests("")); n != 24 {
		t.Fatalf("%d records in all", n)
	}
	fake.Reset()
	if n := len(fake.Requests("")); n != 0 {
		t.Fatalf("%d records after Reset", n)
	}
}

func TestMaxRecorded(t *testing.T) {
	fake := New(Config{MaxRecorded: 2})
	ts := httptest.NewServer(fake)
	defer ts.Close()
	for i := range 5 {
		post(t, t.Context(), ts.URL+"/v1/chat/completions", fmt.Sprintf(`{"model":"m","messages":[],"n":%d}`, i))
	}
	recs := fake.Requests("")
	if len(recs) != 2 || !strings.Contains(string(recs[0].Body), `"n":3`) || !strings.Contains(string(recs[1].Body), `"n":4`) {
		t.Fatalf("records %d", len(recs))
	}
}
