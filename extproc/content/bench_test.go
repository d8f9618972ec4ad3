package content

import (
	"bytes"
	"fmt"
	"strconv"
	"testing"
)

// benchStream returns a stream of shape s with n events, most of them text deltas.
func benchStream(s Shape, n int) []byte {
	var b bytes.Buffer
	switch s {
	case OpenAIChat:
		const env = `{"id":"chatcmpl-C9xQ2bLk7TqVwX1","object":"chat.completion.chunk","created":1756290011,"model":"gpt-4.1-2025-04-14","service_tier":"default","system_fingerprint":"fp_3f58d112f7","choices":[{"index":0,"delta":%s,"logprobs":null,"finish_reason":%s}],"usage":null,"obfuscation":"x1"}`
		fmt.Fprintf(&b, "data: "+env+"\n\n", `{"role":"assistant","content":"","refusal":null}`, "null")
		for i := range n - 3 {
			fmt.Fprintf(&b, "data: "+env+"\n\n", `{"content":" token`+strconv.Itoa(i)+`"}`, "null")
		}
		fmt.Fprintf(&b, "data: "+env+"\n\n", `{}`, `"stop"`)
		b.WriteString("data: [DONE]\n\n")
	case AnthropicMessages:
		b.WriteString("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5\",\"usage\":{\"input_tokens\":472,\"output_tokens\":2}}}\n\n")
		b.WriteString("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n")
		for i := range n - 4 {
			fmt.Fprintf(&b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" token%d\"}}\n\n", i)
		}
		b.WriteString("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n")
		b.WriteString("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
	case OpenAIResponses:
		for i := range n - 1 {
			fmt.Fprintf(&b, "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":%d,\"item_id\":\"msg_68af3c31a6f48190a9c2e5b7d1f3a5c7\",\"output_index\":0,\"content_index\":0,\"delta\":\" token%d\",\"logprobs\":[],\"obfuscation\":\"Qx\"}\n\n", i, i)
		}
		fmt.Fprintf(&b, "event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\",\"sequence_number\":%d,\"item_id\":\"msg_68af3c31a6f48190a9c2e5b7d1f3a5c7\",\"output_index\":0,\"content_index\":0,\"text\":\"…\",\"logprobs\":[]}\n\n", n)
	}
	return b.Bytes()
}

// BenchmarkRewriter measures one ~200-event stream through a Rewriter with an identity
// filter, fed per event (Envoy's usual chunking for a streaming upstream) and in 4 KiB
// chunks. Compare runs with
//
//	go test -run '^$' -bench Rewriter -count 10 ./extproc/content/ > new.txt
//	benchstat old.txt new.txt
func BenchmarkRewriter(b *testing.B) {
	for _, s := range []Shape{OpenAIChat, AnthropicMessages, OpenAIResponses} {
		stream := benchStream(s, 200)
		perEvent := bytes.SplitAfter(stream, []byte("\n\n"))
		perEvent = perEvent[:len(perEvent)-1]
		var fixed [][]byte
		for rest := stream; len(rest) > 0; {
			n := min(4096, len(rest))
			fixed, rest = append(fixed, rest[:n]), rest[n:]
		}
		for _, c := range []struct {
			name   string
			chunks [][]byte
		}{{"per-event", perEvent}, {"4KiB", fixed}} {
			b.Run(s.String()+"/"+c.name, func(b *testing.B) {
				b.SetBytes(int64(len(stream)))
				b.ReportAllocs()
				for b.Loop() {
					r := NewRewriter(s, func() Filter { return identity{} })
					for i, chunk := range c.chunks {
						r.Write(chunk, i == len(c.chunks)-1)
					}
				}
			})
		}
	}
}
