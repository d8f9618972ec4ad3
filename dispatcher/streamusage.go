package dispatcher

import (
	"bytes"
	"net/http"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// An OpenAI chat stream reports usage only when asked (stream_options.include_usage), in one
// extra chunk with empty choices before [DONE]. Without it a stream could be metered and
// priced only by guessing, so the passthrough lane always asks, and removes the extra chunk
// again when the client had not asked for it. Every other byte is relayed as received; with
// the option on, OpenAI adds "usage":null to the other chunks, which clients ignore.

// askStreamUsage returns body with stream_options.include_usage set, and whether the client
// left it unset (so the usage chunk is not the client's to see).
func askStreamUsage(req *attempt.Request, body []byte) ([]byte, bool) {
	if !req.Stream || req.Endpoint != wire.ChatCompletions || !req.Provider.Type.Speaks(wire.OpenAI) {
		return body, false
	}
	if gjson.GetBytes(body, "stream_options.include_usage").Type == gjson.True {
		return body, false
	}
	out, err := sjson.SetBytes(body, "stream_options.include_usage", true)
	if err != nil { // stream_options is not an object: leave the request as the client made it
		return body, false
	}
	return out, true
}

// sseFramer relays an SSE stream in whole events: the bytes as received, each event once
// it is complete, so a stream cut mid-event leaves no half event before the error event
// that ends it. With dropUsage it also drops OpenAI's usage-only chunk. It holds back at
// most one partial event.
type sseFramer struct {
	http.ResponseWriter
	dropUsage bool
	pending   []byte
}

func (f *sseFramer) Write(p []byte) (int, error) {
	data := p
	if len(f.pending) > 0 {
		f.pending = append(f.pending, p...)
		data = f.pending
	}
	end := lastEventEnd(data)
	out, rest := data[:end], data[end:]
	var err error
	if !f.dropUsage {
		if len(out) > 0 {
			_, err = f.ResponseWriter.Write(out)
		}
	} else {
		for len(out) > 0 && err == nil {
			n, _ := nextEventEnd(out)
			if ev := out[:n]; !isUsageChunk(ev) {
				_, err = f.ResponseWriter.Write(ev)
			}
			out = out[n:]
		}
	}
	if len(f.pending) > 0 { // data is pending: keep its tail at the front
		f.pending = f.pending[:copy(f.pending, rest)]
	} else {
		f.pending = append(f.pending, rest...)
	}
	return len(p), err
}

// flushRest writes an unterminated last event of a stream that ended cleanly.
func (f *sseFramer) flushRest() {
	if len(f.pending) > 0 {
		_, _ = f.ResponseWriter.Write(f.pending)
		f.pending = f.pending[:0]
	}
}

// Unwrap lets http.ResponseController flush the real writer.
func (f *sseFramer) Unwrap() http.ResponseWriter { return f.ResponseWriter }

// nextEventEnd is the length of the first complete event in b, its blank line included;
// ok is false when b holds no complete event yet. A blank line that might still grow (a
// trailing "\r" whose "\n" has not arrived) does not complete an event.
func nextEventEnd(b []byte) (n int, ok bool) {
	for i := 0; i < len(b); i++ {
		if b[i] != '\n' && b[i] != '\r' {
			continue
		}
		j := i + 1 // past this line end
		if b[i] == '\r' {
			if j == len(b) {
				return 0, false
			}
			if b[j] == '\n' {
				j++
			}
		}
		if j == len(b) {
			return 0, false
		}
		if b[j] != '\n' && b[j] != '\r' {
			i = j - 1
			continue
		}
		// A blank line follows the line end: the event ends after it.
		k := j + 1
		if b[j] == '\r' {
			if k == len(b) {
				return 0, false
			}
			if b[k] == '\n' {
				k++
			}
		}
		return k, true
	}
	return 0, false
}

// lastEventEnd is the length of the longest prefix of b made of complete events.
func lastEventEnd(b []byte) int {
	end := 0
	for {
		n, ok := nextEventEnd(b[end:])
		if !ok {
			return end
		}
		end += n
	}
}

// isUsageChunk reports whether an event is the chunk include_usage adds: empty choices and a
// usage object.
func isUsageChunk(ev []byte) bool {
	i := bytes.Index(ev, []byte("data:"))
	if i < 0 || !bytes.Contains(ev, []byte(`"usage"`)) {
		return false
	}
	data := bytes.TrimSpace(ev[i+len("data:"):])
	if len(data) == 0 || data[0] != '{' {
		return false
	}
	ch := gjson.GetBytes(data, "choices")
	return ch.IsArray() && len(ch.Array()) == 0 && gjson.GetBytes(data, "usage").IsObject()
}
