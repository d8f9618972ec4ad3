package content

import (
	"bytes"
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestRewriterIdentity(t *testing.T) {
	for _, s := range streams(t) {
		t.Run(s.name, func(t *testing.T) {
			for name, chunks := range chunkings(s.data) {
				out, blocked := run(s.shape, func() Filter { return identity{} }, chunks)
				if blocked || !bytes.Equal(out, s.data) {
					t.Fatalf("%s: blocked=%v, output differs from input:\n got %q\nwant %q", name, blocked, tail(string(out)), tail(string(s.data)))
				}
			}
		})
	}
}

// TestRewriterRedact runs a filter that redacts an e-mail address split across two SSE
// events and holds back tails that may start it.
func TestRewriterRedact(t *testing.T) {
	fragments := []string{"alice", "@exa", "@ex", "example.com", "mple.com"}
	for _, s := range streams(t) {
		t.Run(s.name, func(t *testing.T) {
			orig := readStream(t, s.shape, s.data)
			if !strings.Contains(strings.Join(slices.Collect(maps.Values(orig.text)), ""), "alice@exa") {
				t.Fatal("the recording should carry the address split across events")
			}
			want := map[string]string{}
			for k, v := range orig.text {
				want[k] = strings.ReplaceAll(v, "alice@example.com", "[REDACTED:EMAIL]")
			}
			whole, _ := run(s.shape, newRedactor, [][]byte{s.data})
			for name, chunks := range chunkings(s.data) {
				out, blocked := run(s.shape, newRedactor, chunks)
				if blocked {
					t.Fatalf("%s: blocked", name)
				}
				if !bytes.Equal(out, whole) {
					t.Fatalf("%s: output depends on chunking:\n got %q\nwant %q", name, out, whole)
				}
			}
			for _, f := range fragments {
				if bytes.Contains(whole, []byte(f)) {
					t.Errorf("output still contains %q", f)
				}
			}
			got := readStream(t, s.shape, whole)
			if !maps.Equal(got.text, want) {
				t.Errorf("client text = %q\nwant %q", got.text, want)
			}
			if !maps.Equal(got.meta, orig.meta) {
				t.Errorf("tool call ids and names = %q, want %q", got.meta, orig.meta)
			}
			got.checkRepeats(t)
			if s.shape == OpenAIResponses && len(got.full) != 7 {
				t.Errorf("expected the .done and completed events to repeat the texts, got %q", got.full)
			}
		})
	}
}

// TestRewriterHoldAll holds every text until its channel ends, so each one goes out in a
// synthesized event.
func TestRewriterHoldAll(t *testing.T) {
	for _, s := range streams(t) {
		t.Run(s.name, func(t *testing.T) {
			newHolder := func() Filter { return &holder{} }
			whole, _ := run(s.shape, newHolder, [][]byte{s.data})
			for name, chunks := range chunkings(s.data) {
				if out, _ := run(s.shape, newHolder, chunks); !bytes.Equal(out, whole) {
					t.Fatalf("%s: output depends on chunking:\n got %q\nwant %q", name, out, whole)
				}
			}
			orig := readStream(t, s.shape, s.data)
			got := readStream(t, s.shape, whole)
			if !maps.Equal(got.text, orig.text) {
				t.Errorf("client text = %q\nwant %q", got.text, orig.text)
			}
			if !maps.Equal(got.meta, orig.meta) {
				t.Errorf("tool call ids and names = %q, want %q", got.meta, orig.meta)
			}
			got.checkRepeats(t)
		})
	}
}

func TestRewriterHoldAllFraming(t *testing.T) {
	newHolder := func() Filter { return &holder{} }
	for _, rec := range recordings {
		t.Run(rec.file, func(t *testing.T) {
			s := streams(t)[0]
			for _, x := range streams(t) {
				if x.name == rec.file+"/lf" {
					s = x
				}
			}
			out, _ := run(s.shape, newHolder, [][]byte{s.data})
			text := string(out)
			switch s.shape {
			case OpenAIChat:
				// Held text goes out just before the finish_reason chunk, in synthesized
				// chunks that copy the template's envelope.
				finish := strings.Index(text, `"finish_reason":"tool_calls"`)
				for _, want := range []string{
					`"delta":{"content":"I'll check both cities and mail alice@example.com — \"Paris\" and Vienna"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"x"}`,
					`"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\": \"Paris\", \"notify\": \"alice@example.com\"}"}}]}`,
					`"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"city\": \"Vienna\", \"units\": \"celsius\"}"}}]}`,
				} {
					i := strings.Index(text, want)
					if i < 0 || i > finish {
						t.Errorf("missing before the finish chunk: %s\n%s", want, text)
					}
				}
			case AnthropicMessages:
				want := "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":" +
					`"I'll look up the weather and send it to alice@example.com — starting with \"Vienna\", then Santa"}}` +
					"\n\nevent: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
				if !strings.Contains(text, want) {
					t.Errorf("missing %q in\n%s", want, text)
				}
				// The empty input_json_delta passes; the rest are held, dropped, and sent again
				// in one synthesized delta per block.
				if n := strings.Count(text, "event: content_block_delta"); n != 3 {
					t.Errorf("%d delta events, want 3\n%s", n, text)
				}
			case OpenAIResponses:
				if !strings.Contains(text, `"sequence_number":8,"item_id":"msg_68af3c31a6f48190a9c2e5b7d1f3a5c7","output_index":1,"content_index":0,"delta":"Sure`) ||
					!strings.Contains(text, `{"type":"response.output_text.done","sequence_number":9,`) {
					t.Errorf("synthesized delta should take the next sequence number:\n%s", text)
				}
			}
		})
	}
}

func TestRewriterBlock(t *testing.T) {
	tests := []struct {
		rec  string
		word string
		// before is the start of the first event that must not reach the client.
		before string
	}{
		{"openai_chat", "Paris", `data: {"id":"chatcmpl-C9xQ2bLk7TqVwX1","object":"chat.completion.chunk","created":1756290011,"model":"gpt-4.1-2025-04-14","service_tier":"default","system_fingerprint":"fp_3f58d112f7","choices":[{"index":0,"delta":{"content":"mple.com`},
		{"openai_chat", "elsius", `data: {"id":"chatcmpl-C9xQ2bLk7TqVwX1","object":"chat.completion.chunk","created":1756290011,"model":"gpt-4.1-2025-04-14","service_tier":"default","system_fingerprint":"fp_3f58d112f7","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"elsius`},
		{"anthropic_messages", "San Fra", "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"location"},
		{"openai_responses", "Vienna", "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":7,"},
		{"openai_responses", "subject", "event: response.function_call_arguments.delta\ndata: {\"type\":\"response.function_call_arguments.delta\",\"sequence_number\":13,"},
	}
	for _, tt := range tests {
		t.Run(tt.rec+"/"+tt.word, func(t *testing.T) {
			for _, s := range streams(t) {
				if s.name != tt.rec+"/lf" {
					continue
				}
				cut := strings.Index(string(s.data), tt.before)
				if cut < 0 {
					t.Fatalf("%q not in the recording", tt.before)
				}
				newBlocker := func() Filter { return blocker{tt.word} }
				for name, chunks := range chunkings(s.data) {
					r := NewRewriter(s.shape, newBlocker)
					var out []byte
					blocked := false
					for i, c := range chunks {
						o, b := r.Write(c, i == len(chunks)-1)
						if blocked && (o != nil || !b) {
							t.Fatalf("%s: Write after a block returned (%q, %v)", name, o, b)
						}
						out = append(out, o...)
						blocked = b
					}
					if !blocked {
						t.Fatalf("%s: not blocked", name)
					}
					if !bytes.Equal(out, s.data[:cut]) {
						t.Fatalf("%s: sent %q\nwant %q", name, tail(string(out)), tail(string(s.data[:cut])))
					}
					if o, b := r.Write([]byte("data: {}\n\n"), true); o != nil || !b {
						t.Fatalf("%s: Write after a block returned (%q, %v)", name, o, b)
					}
				}
			}
		})
	}
}

// TestRewriterBlockOnFlush blocks on text that only a flush releases: what came before
// the flush point is sent, the synthesized event and the event after it are not.
func TestRewriterBlockOnFlush(t *testing.T) {
	in := "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi ali\"}}\n\n" +
		"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
	r := NewRewriter(AnthropicMessages, func() Filter { return &flushBlocker{} })
	out, blocked := r.Write([]byte(in), false)
	if !blocked || string(out) != "" {
		t.Fatalf("got (%q, %v), want nothing and blocked", out, blocked)
	}
}

// flushBlocker holds everything and blocks when flushed.
type flushBlocker struct{}

func (flushBlocker) Push(string) (string, bool) { return "", false }
func (flushBlocker) Flush() (string, bool)      { return "", true }

func TestRewriterEdgeCases(t *testing.T) {
	const chunk = `data: {"choices":[{"index":0,"delta":{"content":"alice@example.com"},"finish_reason":null}]}`
	const done = `data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`
	const redacted = `data: {"choices":[{"index":0,"delta":{"content":"[REDACTED:EMAIL]"},"finish_reason":null}]}`
	tests := []struct {
		name      string
		shape     Shape
		newFilter func() Filter
		in        []string // chunks; the last one ends the stream
		want      string
	}{
		{"comments and blank lines pass", OpenAIChat, newRedactor,
			[]string{": keep-alive\n\n\n\r\n", chunk + "\n\n"}, ": keep-alive\n\n\n\r\n" + redacted + "\n\n"},
		{"final event without blank line", OpenAIChat, newRedactor,
			[]string{chunk + "\n"}, redacted + "\n\n"},
		{"final event without blank line, unchanged", OpenAIChat, newRedactor,
			[]string{"data: [DONE]\n"}, "data: [DONE]\n"},
		{"unterminated last line passes as is", OpenAIChat, newRedactor,
			[]string{chunk + "\n\n", `data: {"choi`}, redacted + "\n\n" + `data: {"choi`},
		{"held text goes before an unterminated last line", OpenAIChat, func() Filter { return &holder{} },
			[]string{"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\ndata: {\"cho"},
			"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"}}]}\n\n" +
				"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n" +
				"data: {\"cho"},
		{"held text after a final event without blank line", AnthropicMessages, func() Filter { return &holder{} },
			[]string{"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\nevent: ping\ndata: {\"type\":\"ping\"}\n"},
			"event: ping\ndata: {\"type\":\"ping\"}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n"},
		{"multi-line data", OpenAIChat, newRedactor,
			[]string{"data: {\"choices\":[{\"index\":0,\n", "data: \"delta\":{\"content\":\"alice@example.com\"}}]}\n\n"},
			"data: {\"choices\":[{\"index\":0,\ndata: \"delta\":{\"content\":\"[REDACTED:EMAIL]\"}}]}\n\n"},
		{"id line kept", OpenAIChat, newRedactor,
			[]string{"id: 7\r\n" + chunk + "\r\n\r\n"}, "id: 7\n" + redacted + "\n\n"},
		{"finish in the same chunk as text", OpenAIChat, func() Filter { return &holder{} },
			[]string{"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n", "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"b\"},\"finish_reason\":\"stop\"}]}\n\n"},
			"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ab\"},\"finish_reason\":\"stop\"}]}\n\n"},
		{"flush at finish", OpenAIChat, newRedactor,
			[]string{`data: {"id":"c1","choices":[{"index":0,"delta":{"content":"mail al"},"finish_reason":null}],"usage":{"total_tokens":1}}` + "\n\n" + done + "\n\n"},
			`data: {"id":"c1","choices":[{"index":0,"delta":{"content":"mail "},"finish_reason":null}],"usage":{"total_tokens":1}}` + "\n\n" +
				`data: {"id":"c1","choices":[{"index":0,"delta":{"content":"al"},"logprobs":null,"finish_reason":null}],"usage":null}` + "\n\n" + done + "\n\n"},
		{"parallel choices", OpenAIChat, newRedactor,
			[]string{`data: {"choices":[{"index":0,"delta":{"content":"alice@"}},{"index":1,"delta":{"content":"x alice@"}}]}` + "\n\n" +
				`data: {"choices":[{"index":1,"delta":{"content":"example.com"}},{"index":0,"delta":{"content":"example.com"}}]}` + "\n\n"},
			`data: {"choices":[{"index":0,"delta":{"content":""}},{"index":1,"delta":{"content":"x "}}]}` + "\n\n" +
				`data: {"choices":[{"index":1,"delta":{"content":"[REDACTED:EMAIL]"}},{"index":0,"delta":{"content":"[REDACTED:EMAIL]"}}]}` + "\n\n"},
		{"escaped and unicode text", OpenAIChat, newRedactor,
			[]string{`data: {"choices":[{"index":0,"delta":{"content":"\u00e9 \"alice\u0040example.com\"\n\t\u2028 ✓"}}]}` + "\n\n"},
			`data: {"choices":[{"index":0,"delta":{"content":"é \"[REDACTED:EMAIL]\"\n\t\u2028 ✓"}}]}` + "\n\n"},
		{"not JSON passes", OpenAIChat, newRedactor,
			[]string{"data: hello alice@example.com\n\n"}, "data: hello alice@example.com\n\n"},
		{"unknown shape passes", Shape(9), newRedactor,
			[]string{chunk + "\n\n"}, chunk + "\n\n"},
		{"nil filter passes", OpenAIChat, nil,
			[]string{chunk + "\n\n"}, chunk + "\n\n"},
		{"anthropic block text in content_block_start", AnthropicMessages, newRedactor,
			[]string{"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"to alice@example.com, a\"}}\n\n" +
				"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"},
			"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"to [REDACTED:EMAIL], \"}}\n\n" +
				"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\"}}\n\n" +
				"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"},
		{"anthropic thinking", AnthropicMessages, newRedactor,
			[]string{"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"mail alice@example.com\"}}\n\n" +
				"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"EqQB\"}}\n\n"},
			"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"mail [REDACTED:EMAIL]\"}}\n\n" +
				"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"EqQB\"}}\n\n"},
		{"responses text never streamed is filtered whole", OpenAIResponses, newRedactor,
			[]string{"event: response.output_item.done\ndata: {\"type\":\"response.output_item.done\",\"sequence_number\":3,\"item\":{\"id\":\"m1\",\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"alice@example.com\"}]}}\n\n" +
				"event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":4,\"response\":{\"output\":[{\"id\":\"m1\",\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"alice@example.com\"}]},{\"id\":\"c1\",\"type\":\"custom_tool_call\",\"input\":\"*** alice@example.com\"}],\"output_text\":\"alice@example.com\"}}\n\n"},
			"event: response.output_item.done\ndata: {\"type\":\"response.output_item.done\",\"sequence_number\":3,\"item\":{\"id\":\"m1\",\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"[REDACTED:EMAIL]\"}]}}\n\n" +
				"event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":4,\"response\":{\"output\":[{\"id\":\"m1\",\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"[REDACTED:EMAIL]\"}]},{\"id\":\"c1\",\"type\":\"custom_tool_call\",\"input\":\"*** [REDACTED:EMAIL]\"}],\"output_text\":\"[REDACTED:EMAIL]\"}}\n\n"},
		{"responses repeat that differs from the deltas is filtered whole", OpenAIResponses, newRedactor,
			[]string{"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"item_id\":\"m\",\"content_index\":0,\"delta\":\"hi \"}\n\n" +
				"event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\",\"sequence_number\":2,\"item_id\":\"m\",\"content_index\":0,\"text\":\"hi alice@example.com\"}\n\n" +
				"event: response.content_part.done\ndata: {\"type\":\"response.content_part.done\",\"sequence_number\":3,\"item_id\":\"m\",\"content_index\":0,\"part\":{\"type\":\"output_text\",\"text\":\"hi \"}}\n\n"},
			"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"item_id\":\"m\",\"content_index\":0,\"delta\":\"hi \"}\n\n" +
				"event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\",\"sequence_number\":2,\"item_id\":\"m\",\"content_index\":0,\"text\":\"hi [REDACTED:EMAIL]\"}\n\n" +
				"event: response.content_part.done\ndata: {\"type\":\"response.content_part.done\",\"sequence_number\":3,\"item_id\":\"m\",\"content_index\":0,\"part\":{\"type\":\"output_text\",\"text\":\"hi \"}}\n\n"},
		{"responses text in added events is filtered", OpenAIResponses, newRedactor,
			[]string{"event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"sequence_number\":1,\"item\":{\"id\":\"f\",\"type\":\"function_call\",\"arguments\":\"{\\\"to\\\":\\\"alice@example.com\\\"}\"}}\n\n" +
				"event: response.content_part.added\ndata: {\"type\":\"response.content_part.added\",\"sequence_number\":2,\"item_id\":\"m\",\"content_index\":0,\"part\":{\"type\":\"output_text\",\"text\":\"alice@example.com\"}}\n\n"},
			"event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"sequence_number\":1,\"item\":{\"id\":\"f\",\"type\":\"function_call\",\"arguments\":\"{\\\"to\\\":\\\"[REDACTED:EMAIL]\\\"}\"}}\n\n" +
				"event: response.content_part.added\ndata: {\"type\":\"response.content_part.added\",\"sequence_number\":2,\"item_id\":\"m\",\"content_index\":0,\"part\":{\"type\":\"output_text\",\"text\":\"[REDACTED:EMAIL]\"}}\n\n"},
		{"responses reasoning summary and custom tool input", OpenAIResponses, newRedactor,
			[]string{"event: response.reasoning_summary_text.delta\ndata: {\"type\":\"response.reasoning_summary_text.delta\",\"sequence_number\":1,\"item_id\":\"rs\",\"summary_index\":0,\"delta\":\"ask alice@exa\"}\n\n" +
				"event: response.reasoning_summary_text.delta\ndata: {\"type\":\"response.reasoning_summary_text.delta\",\"sequence_number\":2,\"item_id\":\"rs\",\"summary_index\":0,\"delta\":\"mple.com\"}\n\n" +
				"event: response.reasoning_summary_text.done\ndata: {\"type\":\"response.reasoning_summary_text.done\",\"sequence_number\":3,\"item_id\":\"rs\",\"summary_index\":0,\"text\":\"ask alice@example.com\"}\n\n" +
				"event: response.custom_tool_call_input.delta\ndata: {\"type\":\"response.custom_tool_call_input.delta\",\"sequence_number\":4,\"item_id\":\"ct\",\"delta\":\"+alice@example.com a\"}\n\n" +
				"event: response.custom_tool_call_input.done\ndata: {\"type\":\"response.custom_tool_call_input.done\",\"sequence_number\":5,\"item_id\":\"ct\",\"input\":\"+alice@example.com a\"}\n\n" +
				"event: response.output_item.done\ndata: {\"type\":\"response.output_item.done\",\"sequence_number\":6,\"item\":{\"id\":\"rs\",\"type\":\"reasoning\",\"summary\":[{\"type\":\"summary_text\",\"text\":\"ask alice@example.com\"}]}}\n\n"},
			"event: response.reasoning_summary_text.delta\ndata: {\"type\":\"response.reasoning_summary_text.delta\",\"sequence_number\":1,\"item_id\":\"rs\",\"summary_index\":0,\"delta\":\"ask \"}\n\n" +
				"event: response.reasoning_summary_text.delta\ndata: {\"type\":\"response.reasoning_summary_text.delta\",\"sequence_number\":2,\"item_id\":\"rs\",\"summary_index\":0,\"delta\":\"[REDACTED:EMAIL]\"}\n\n" +
				"event: response.reasoning_summary_text.done\ndata: {\"type\":\"response.reasoning_summary_text.done\",\"sequence_number\":3,\"item_id\":\"rs\",\"summary_index\":0,\"text\":\"ask [REDACTED:EMAIL]\"}\n\n" +
				"event: response.custom_tool_call_input.delta\ndata: {\"type\":\"response.custom_tool_call_input.delta\",\"sequence_number\":4,\"item_id\":\"ct\",\"delta\":\"+[REDACTED:EMAIL] \"}\n\n" +
				"event: response.custom_tool_call_input.delta\ndata: {\"type\":\"response.custom_tool_call_input.delta\",\"sequence_number\":5,\"item_id\":\"ct\",\"delta\":\"a\"}\n\n" +
				"event: response.custom_tool_call_input.done\ndata: {\"type\":\"response.custom_tool_call_input.done\",\"sequence_number\":6,\"item_id\":\"ct\",\"input\":\"+[REDACTED:EMAIL] a\"}\n\n" +
				"event: response.output_item.done\ndata: {\"type\":\"response.output_item.done\",\"sequence_number\":7,\"item\":{\"id\":\"rs\",\"type\":\"reasoning\",\"summary\":[{\"type\":\"summary_text\",\"text\":\"ask [REDACTED:EMAIL]\"}]}}\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var chunks [][]byte
			for _, c := range tt.in {
				chunks = append(chunks, []byte(c))
			}
			out, blocked := run(tt.shape, tt.newFilter, chunks)
			if blocked || string(out) != tt.want {
				t.Errorf("blocked=%v, got\n%s\nwant\n%s", blocked, out, tt.want)
			}
		})
	}
}

// TestRewriterMemory runs a long stream and checks that per-channel state goes away as
// channels end.
func TestRewriterMemory(t *testing.T) {
	block := func(i int) string {
		return strings.NewReplacer("N", string(rune('0'+i%10))).Replace(
			"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":N,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n" +
				"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":N,\"delta\":{\"type\":\"text_delta\",\"text\":\"mail ali\"}}\n\n" +
				"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":N}\n\n")
	}
	r := NewRewriter(AnthropicMessages, newRedactor)
	for i := range 20000 {
		out, blocked := r.Write([]byte(block(i)), false)
		if blocked || !bytes.Contains(out, []byte(`"text":"ali"`)) {
			t.Fatalf("event %d: (%q, %v)", i, out, blocked)
		}
		if len(r.chans) != 0 || len(r.buf) != 0 || cap(r.buf) > maxIdleBuf {
			t.Fatalf("event %d: %d channels and %d buffered bytes left", i, len(r.chans), len(r.buf))
		}
	}

	rr := NewRewriter(OpenAIResponses, newRedactor)
	for i := range 5000 {
		seq := strings.Repeat("9", 1+i%3)
		in := "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":" + seq + ",\"item_id\":\"m\",\"content_index\":0,\"delta\":\"alice@example.com!\"}\n\n"
		if _, blocked := rr.Write([]byte(in), false); blocked {
			t.Fatal("blocked")
		}
	}
	if len(rr.chans) != 1 {
		t.Fatalf("%d channels open, want 1", len(rr.chans))
	}
	rr.Write([]byte("event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":99999,\"response\":{\"output\":[]}}\n\n"), true)
	if len(rr.chans) != 0 || rr.finals != nil {
		t.Fatalf("state left after response.completed: %d channels, %d finals", len(rr.chans), len(rr.finals))
	}
}

// TestRewriterAllocs keeps the per-event cost of an unchanged stream in check.
func TestRewriterAllocs(t *testing.T) {
	s := benchStream(OpenAIChat, 200)
	allocs := testing.AllocsPerRun(20, func() {
		r := NewRewriter(OpenAIChat, func() Filter { return identity{} })
		r.Write(s, true)
	})
	// One string per event, a channel and its filter, and the output buffer.
	if perEvent := allocs / 200; perEvent > 1.2 {
		t.Errorf("%.1f allocations per event, want at most 1.2", perEvent)
	}
}
