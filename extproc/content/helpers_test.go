package content

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

// stream is a recorded upstream stream.
type stream struct {
	name  string
	shape Shape
	data  []byte
}

var recordings = []struct {
	file  string
	shape Shape
}{
	{"openai_chat", OpenAIChat},
	{"anthropic_messages", AnthropicMessages},
	{"openai_responses", OpenAIResponses},
}

// streams returns every recording with "\n" and "\r\n" line endings (both are files in
// testdata), plus the "\n" one without the space after "data:".
func streams(t testing.TB) []stream {
	t.Helper()
	var out []stream
	for _, rec := range recordings {
		lf, err := os.ReadFile("testdata/" + rec.file + ".sse")
		if err != nil {
			t.Fatal(err)
		}
		crlf, err := os.ReadFile("testdata/" + rec.file + "_crlf.sse")
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(lf, []byte("\r")) || !bytes.Contains(crlf, []byte("\r\n")) ||
			!bytes.Equal(bytes.ReplaceAll(crlf, []byte("\r\n"), []byte("\n")), lf) {
			t.Fatalf("testdata for %s: the LF and CRLF recordings must differ only in line endings", rec.file)
		}
		nospace := bytes.ReplaceAll(lf, []byte("\ndata: "), []byte("\ndata:"))
		if bytes.HasPrefix(nospace, []byte("data: ")) {
			nospace = append([]byte("data:"), nospace[len("data: "):]...)
		}
		out = append(out,
			stream{rec.file + "/lf", rec.shape, lf},
			stream{rec.file + "/crlf", rec.shape, crlf},
			stream{rec.file + "/nospace", rec.shape, nospace})
	}
	return out
}

// run feeds chunks to a new Rewriter and returns everything it sent, and whether it
// blocked.
func run(s Shape, newFilter func() Filter, chunks [][]byte) ([]byte, bool) {
	r := NewRewriter(s, newFilter)
	var out []byte
	for i, c := range chunks {
		o, blocked := r.Write(c, i == len(chunks)-1)
		out = append(out, o...)
		if blocked {
			return out, true
		}
	}
	return out, false
}

// randomChunks splits b at random points, into pieces of 1 to maxLen bytes.
func randomChunks(rng *rand.Rand, b []byte, maxLen int) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n := min(1+rng.IntN(maxLen), len(b))
		out = append(out, b[:n:n])
		b = b[n:]
	}
	return out
}

// chunkings returns the ways a stream is fed: whole, split in two at every byte, byte by
// byte, and random chunkings.
func chunkings(b []byte) map[string][][]byte {
	out := map[string][][]byte{"whole": {b}}
	for i := 1; i < len(b); i++ {
		out[fmt.Sprintf("split@%d", i)] = [][]byte{b[:i:i], b[i:]}
	}
	bytewise := make([][]byte, len(b))
	for i := range b {
		bytewise[i] = b[i : i+1 : i+1]
	}
	out["bytewise"] = bytewise
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 40 {
		out[fmt.Sprintf("random%d", i)] = randomChunks(rng, b, 1+rng.IntN(300))
	}
	// An empty final chunk, as Envoy sends when end_of_stream comes on its own.
	out["empty-end"] = [][]byte{b, nil}
	return out
}

// identity releases everything at once.
type identity struct{}

func (identity) Push(text string) (string, bool) { return text, false }
func (identity) Flush() (string, bool)           { return "", false }

// redactor replaces secret with mask, holding back a tail that may be the start of it.
type redactor struct {
	secret, mask string
	held         string
}

func newRedactor() Filter { return &redactor{secret: "alice@example.com", mask: "[REDACTED:EMAIL]"} }

func (f *redactor) Push(text string) (string, bool) {
	s := strings.ReplaceAll(f.held+text, f.secret, f.mask)
	keep := 0
	for n := min(len(f.secret)-1, len(s)); n > 0; n-- {
		if strings.HasSuffix(s, f.secret[:n]) {
			keep = n
			break
		}
	}
	f.held = s[len(s)-keep:]
	return s[:len(s)-keep], false
}

func (f *redactor) Flush() (string, bool) {
	s := f.held
	f.held = ""
	return s, false
}

// holder holds everything until Flush.
type holder struct{ held strings.Builder }

func (f *holder) Push(text string) (string, bool) { f.held.WriteString(text); return "", false }
func (f *holder) Flush() (string, bool)           { return f.held.String(), false }

// blocker releases text until it sees word.
type blocker struct{ word string }

func (f blocker) Push(text string) (string, bool) { return text, strings.Contains(text, f.word) }
func (f blocker) Flush() (string, bool)           { return "", false }

var (
	_ Filter = identity{}
	_ Filter = (*redactor)(nil)
	_ Filter = (*holder)(nil)
	_ Filter = blocker{}
)

// sseEvent is an event as a client parses it.
type sseEvent struct {
	name    string
	hasName bool
	data    string
}

// parseSSE parses b the way an SDK does (independently of the code under test) and fails
// on anything malformed: a partial event at the end, or data that is neither JSON nor
// [DONE].
func parseSSE(t *testing.T, b []byte) []sseEvent {
	t.Helper()
	text := strings.ReplaceAll(string(b), "\r\n", "\n")
	if text != "" && !strings.HasSuffix(text, "\n\n") {
		t.Fatalf("output does not end with a complete event: %q", tail(text))
	}
	var out []sseEvent
	for _, block := range strings.Split(strings.TrimSuffix(text, "\n\n"), "\n\n") {
		var ev sseEvent
		var data []string
		for _, line := range strings.Split(block, "\n") {
			if line == "" || line[0] == ':' {
				continue
			}
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "event":
				ev.name, ev.hasName = value, true
			case "data":
				data = append(data, value)
			default:
				t.Fatalf("unexpected field %q in %q", field, block)
			}
		}
		if data == nil {
			continue
		}
		ev.data = strings.Join(data, "\n")
		if ev.data != "[DONE]" && !json.Valid([]byte(ev.data)) {
			t.Fatalf("invalid JSON in data: %q", ev.data)
		}
		out = append(out, ev)
	}
	return out
}

func tail(s string) string {
	if len(s) > 80 {
		return "…" + s[len(s)-80:]
	}
	return s
}

// transcript is what a client assembles from a stream: the text of every channel, and
// what repeats it.
type transcript struct {
	text map[string]string
	// full holds the texts of the events that repeat a channel's text in full
	// (Responses), keyed like text with a suffix naming the event.
	full map[string]string
	meta map[string]string
}

// readStream parses out as the client of shape s would, checking the framing rules its
// SDK depends on.
func readStream(t *testing.T, s Shape, out []byte) transcript {
	t.Helper()
	tr := transcript{text: map[string]string{}, full: map[string]string{}, meta: map[string]string{}}
	lastSeq := -1
	finished := map[int]bool{}
	stopped := map[int]bool{}
	for _, ev := range parseSSE(t, out) {
		if ev.data == "[DONE]" {
			if s != OpenAIChat {
				t.Fatalf("[DONE] in a %v stream", s)
			}
			continue
		}
		switch s {
		case OpenAIChat:
			var c chatChunk
			mustUnmarshal(t, ev.data, &c)
			for _, ch := range c.Choices {
				if finished[ch.Index] && (ch.Delta.Content != nil && *ch.Delta.Content != "" || len(ch.Delta.ToolCalls) > 0) {
					t.Errorf("choice %d: text after finish_reason: %s", ch.Index, ev.data)
				}
				if ch.Delta.Content != nil {
					tr.text[fmt.Sprintf("c%d.content", ch.Index)] += *ch.Delta.Content
				}
				for _, tc := range ch.Delta.ToolCalls {
					if tc.Index == nil {
						t.Fatalf("tool call delta without index: %s", ev.data)
					}
					k := fmt.Sprintf("c%d.tool%d", ch.Index, *tc.Index)
					if _, seen := tr.meta[k+".id"]; !seen {
						if tc.ID == "" || tc.Function.Name == "" {
							t.Errorf("first fragment of %s lacks id or name: %s", k, ev.data)
						}
						tr.meta[k+".id"], tr.meta[k+".name"] = tc.ID, tc.Function.Name
					} else if tc.ID != "" || tc.Function.Name != "" {
						t.Errorf("later fragment of %s repeats id or name: %s", k, ev.data)
					}
					tr.text[k] += tc.Function.Arguments
				}
				if ch.FinishReason != nil {
					finished[ch.Index] = true
				}
			}
		case AnthropicMessages:
			var e anthropicEvent
			mustUnmarshal(t, ev.data, &e)
			if !ev.hasName || ev.name != e.Type {
				t.Fatalf("event line %q does not name the event %q", ev.name, e.Type)
			}
			k := fmt.Sprintf("block%d", e.Index)
			switch e.Type {
			case "content_block_delta":
				if stopped[e.Index] {
					t.Errorf("delta after content_block_stop: %s", ev.data)
				}
				tr.text[k] += e.Delta.Text + e.Delta.PartialJSON + e.Delta.Thinking
			case "content_block_stop":
				stopped[e.Index] = true
			}
		case OpenAIResponses:
			var e wireResponsesEvent
			mustUnmarshal(t, ev.data, &e)
			if !ev.hasName || ev.name != e.Type {
				t.Fatalf("event line %q does not name the event %q", ev.name, e.Type)
			}
			if e.Seq <= lastSeq {
				t.Errorf("sequence_number %d after %d", e.Seq, lastSeq)
			}
			lastSeq = e.Seq
			part := fmt.Sprintf("%s/%d", e.ItemID, e.ContentIndex)
			switch e.Type {
			case "response.output_text.delta":
				tr.text[part] += e.Delta
			case "response.function_call_arguments.delta":
				tr.text[e.ItemID] += e.Delta
			case "response.output_text.done":
				tr.full[part+" text.done"] = e.Text
			case "response.content_part.done":
				tr.full[part+" part.done"] = e.Part.Text
			case "response.function_call_arguments.done":
				tr.full[e.ItemID+" arguments.done"] = e.Arguments
			case "response.output_item.done":
				e.Item.record(tr.full, " item.done")
			case "response.completed":
				for _, it := range e.Response.Output {
					it.record(tr.full, " completed")
				}
			}
		}
	}
	return tr
}

// checkRepeats checks that the Responses events repeating a text agree with the deltas.
func (tr transcript) checkRepeats(t *testing.T) {
	t.Helper()
	for k, v := range tr.full {
		key, _, _ := strings.Cut(k, " ")
		if got := tr.text[key]; got != v {
			t.Errorf("%s carries %q, but the deltas add up to %q", k, v, got)
		}
	}
}

type chatChunk struct {
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Content   *string `json:"content"`
			ToolCalls []struct {
				Index    *int   `json:"index"`
				ID       string `json:"id"`
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
}

type anthropicEvent struct {
	Type  string `json:"type"`
	Index int    `json:"index"`
	Delta struct {
		Text        string `json:"text"`
		PartialJSON string `json:"partial_json"`
		Thinking    string `json:"thinking"`
	} `json:"delta"`
}

type responsesItem struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	Arguments string `json:"arguments"`
	Content   []struct {
		Text string `json:"text"`
	} `json:"content"`
}

func (it responsesItem) record(m map[string]string, suffix string) {
	switch it.Type {
	case "message":
		for i, c := range it.Content {
			m[fmt.Sprintf("%s/%d%s", it.ID, i, suffix)] = c.Text
		}
	case "function_call":
		m[it.ID+suffix] = it.Arguments
	}
}

type wireResponsesEvent struct {
	Type         string `json:"type"`
	Seq          int    `json:"sequence_number"`
	ItemID       string `json:"item_id"`
	ContentIndex int    `json:"content_index"`
	Delta        string `json:"delta"`
	Text         string `json:"text"`
	Arguments    string `json:"arguments"`
	Part         struct {
		Text string `json:"text"`
	} `json:"part"`
	Item     responsesItem `json:"item"`
	Response struct {
		Output []responsesItem `json:"output"`
	} `json:"response"`
}

func mustUnmarshal(t *testing.T, data string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(data), v); err != nil {
		t.Fatalf("%v: %s", err, data)
	}
}
