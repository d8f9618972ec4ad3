package content

import (
	"bytes"
	"strings"
)

// eventEnd looks for the blank line that ends the first event in b. It returns the
// event's length through that blank line, or -1 and the offset to resume the search at
// once more bytes arrive, so that an event trickling in byte by byte is scanned once.
//
// Lines end in "\n" or "\r\n". A lone "\r" (allowed by the SSE spec, sent by no LLM
// provider) is not a line end here.
func eventEnd(b []byte, from int) (n, resume int) {
	if from == 0 {
		// A blank line where an event should start is an (empty) event of its own.
		switch {
		case len(b) > 0 && b[0] == '\n':
			return 1, 0
		case len(b) > 1 && b[0] == '\r' && b[1] == '\n':
			return 2, 0
		}
	}
	i := from
	for {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1, len(b)
		}
		k := i + j
		switch {
		case k+1 >= len(b):
			return -1, k
		case b[k+1] == '\n':
			return k + 2, 0
		case b[k+1] == '\r':
			if k+2 >= len(b) {
				return -1, k
			}
			if b[k+2] == '\n' {
				return k + 3, 0
			}
		}
		i = k + 1
	}
}

// event is one SSE event.
type event struct {
	raw     string // its bytes, through the blank line that ends it
	name    string // the "event" field
	data    string // the "data" field: its lines joined with "\n"
	hasData bool
}

// parseEvent reads raw's fields. An unterminated last line (only possible at the end of a
// stream) is ignored, as SSE clients do.
func parseEvent(raw string) event {
	ev := event{raw: raw}
	rest := raw
	for {
		i := strings.IndexByte(rest, '\n')
		if i < 0 {
			return ev
		}
		line := strings.TrimSuffix(rest[:i], "\r")
		rest = rest[i+1:]
		if line == "" || line[0] == ':' {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "data":
			if ev.hasData {
				ev.data += "\n" + value
			} else {
				ev.data, ev.hasData = value, true
			}
		case "event":
			ev.name = value
		}
	}
}

// appendEvent renders an event: the lines of raw other than its data lines (event:, id:,
// comments), then data, one data line per line of data, then the blank line.
func appendEvent(dst []byte, raw string, data []byte) []byte {
	rest := raw
	for {
		i := strings.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimSuffix(rest[:i], "\r")
		rest = rest[i+1:]
		if line == "" || line == "data" || strings.HasPrefix(line, "data:") {
			continue
		}
		dst = append(dst, line...)
		dst = append(dst, '\n')
	}
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		dst = append(dst, "data: "...)
		dst = append(dst, data[:i]...)
		dst = append(dst, '\n')
		data = data[i+1:]
	}
	dst = append(dst, "data: "...)
	dst = append(dst, data...)
	return append(dst, '\n', '\n')
}
