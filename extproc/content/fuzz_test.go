package content

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"
)

func addStreamSeeds(f *testing.F) {
	for _, rec := range recordings {
		b, err := os.ReadFile("testdata/" + rec.file + "_crlf.sse")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint16(len(b)/3), uint8(rec.shape))
	}
	f.Add([]byte("data: {\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}\n"), uint16(7), uint8(OpenAIChat))
	f.Add([]byte("\r\n\n: c\ndata\nevent: x\r\ndata:{}\n\n"), uint16(3), uint8(AnthropicMessages))
}

// FuzzRewriterIdentity: whatever the bytes, an identity filter gives them back unchanged,
// and other filters never panic.
func FuzzRewriterIdentity(f *testing.F) {
	addStreamSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte, split uint16, shape uint8) {
		s := Shape(shape%4 + 1)
		cut := int(split) % (len(data) + 1)
		chunks := [][]byte{data[:cut:cut], data[cut:]}
		out, blocked := run(s, func() Filter { return identity{} }, chunks)
		if blocked || !bytes.Equal(out, data) {
			t.Fatalf("identity changed the stream:\n got %q\nwant %q", out, data)
		}
		run(s, newRedactor, chunks)
		run(s, func() Filter { return &holder{} }, chunks)
		run(s, func() Filter { return blocker{"a"} }, chunks)
	})
}

// FuzzFields: listing fields never panics, and rewriting all of them keeps valid JSON
// valid.
func FuzzFields(f *testing.F) {
	for _, b := range []string{chatRequest, anthropicRequest, responsesRequest, chatResponse, anthropicResponse, responsesResponse} {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, s := range []Shape{OpenAIChat, AnthropicMessages, OpenAIResponses} {
			for _, list := range [][]Field{RequestText(body), ResponseFields(s, body)} {
				var addressable []Field
				for _, fl := range list {
					if fl.Path != "" {
						fl.Text = "«" + fl.Text + "»"
						addressable = append(addressable, fl)
					}
				}
				out, err := Replace(body, addressable)
				if !json.Valid(body) {
					continue
				}
				if err != nil {
					t.Fatalf("%v: %v", s, err)
				}
				if !json.Valid(out) {
					t.Fatalf("%v: invalid JSON after Replace: %s", s, out)
				}
			}
		}
	})
}
