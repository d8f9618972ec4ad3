// Package content knows where the text lives in the bodies Sluice proxies (requests,
// buffered JSON answers and SSE streams) so that guardrails can read it and put redacted
// text back. It decides nothing itself: callers look at the [Field] texts or run [Filter]s
// over the streamed text.
//
// Bodies are scanned with gjson and edited by splicing new JSON strings into the original
// bytes, so everything outside the replaced strings (cache_control, unknown fields, key
// order, whitespace) reaches the provider and the client byte for byte.
package content

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// Shape is a wire format + endpoint whose bodies this package understands.
type Shape uint8

const (
	// OpenAIChat is POST /v1/chat/completions.
	OpenAIChat Shape = iota + 1
	// AnthropicMessages is POST /v1/messages.
	AnthropicMessages
	// OpenAIResponses is POST /v1/responses.
	OpenAIResponses
)

// String returns a stable name for logs.
func (s Shape) String() string {
	switch s {
	case OpenAIChat:
		return "openai-chat"
	case AnthropicMessages:
		return "anthropic-messages"
	case OpenAIResponses:
		return "openai-responses"
	}
	return "unknown"
}

// Field is one string in a JSON body.
//
// Path is its gjson/sjson path, with keys escaped so that both libraries reach this
// string. Path is empty when the text cannot be addressed, and [Replace] then refuses it,
// so a redaction fails closed:
//   - it sits under a key that repeats an earlier key of the same object. Paths reach only
//     the first of duplicate keys while most decoders (Go, Python, JavaScript) keep the
//     last, so the text is listed for inspection but cannot be rewritten;
//   - it is nested deeper than 128 levels in tool arguments or a schema; Text is then the
//     raw JSON of that subtree.
//
// Text is the decoded string.
type Field struct {
	Path string
	Text string
}

// Replace writes new text at each field's path and returns the new body. The input is
// never modified: when nothing changes, body itself is returned; otherwise a new slice.
// Fields whose Text equals the current value are skipped. When two fields name the same
// path the later one wins.
//
// Replace fails when a path does not lead to a JSON string or is empty (see [Field]).
func Replace(body []byte, fields []Field) ([]byte, error) {
	var edits []edit
	for _, f := range fields {
		if f.Path == "" {
			return nil, errors.New("content: a field under a duplicate JSON key cannot be rewritten")
		}
		r := gjson.GetBytes(body, f.Path)
		if r.Type != gjson.String || !rawAt(body, r) {
			return nil, fmt.Errorf("content: no string at path %q", f.Path)
		}
		if r.Str == f.Text {
			continue
		}
		edits = append(edits, edit{start: r.Index, end: r.Index + len(r.Raw), text: f.Text})
	}
	if len(edits) == 0 {
		return body, nil
	}
	// Stable, so that of two edits at one place the later field is last and wins.
	slices.SortStableFunc(edits, func(a, b edit) int { return a.start - b.start })
	n := len(body)
	for _, e := range edits {
		n += len(e.text) + 2 - (e.end - e.start)
	}
	out := make([]byte, 0, n+n/16)
	pos := 0
	for i, e := range edits {
		if i+1 < len(edits) && edits[i+1].start == e.start {
			continue
		}
		out = append(out, body[pos:e.start]...)
		out = appendJSONString(out, e.text)
		pos = e.end
	}
	return append(out, body[pos:]...), nil
}

// rawAt reports whether r, found in body, really sits at r.Index: the splice offsets are
// only trusted after this check.
func rawAt(body []byte, r gjson.Result) bool {
	return r.Index > 0 && r.Index+len(r.Raw) <= len(body) && string(body[r.Index:r.Index+len(r.Raw)]) == r.Raw
}

// edit replaces data[start:end] with text, encoded as a JSON string unless raw is set.
type edit struct {
	start, end int
	text       string
	raw        bool
}

// appendEdited appends data with edits applied. edits must not overlap; they are sorted
// here.
func appendEdited(dst []byte, data string, edits []edit) []byte {
	slices.SortFunc(edits, func(a, b edit) int { return a.start - b.start })
	pos := 0
	for _, e := range edits {
		dst = append(dst, data[pos:e.start]...)
		if e.raw {
			dst = append(dst, e.text...)
		} else {
			dst = appendJSONString(dst, e.text)
		}
		pos = e.end
	}
	return append(dst, data[pos:]...)
}

// editString returns the edit that sets the JSON string r (found in data) to text, or
// false when r is not a string located in data.
func editString(data string, r gjson.Result, text string) (edit, bool) {
	if r.Type != gjson.String || r.Index <= 0 || r.Index+len(r.Raw) > len(data) || data[r.Index:r.Index+len(r.Raw)] != r.Raw {
		return edit{}, false
	}
	return edit{start: r.Index, end: r.Index + len(r.Raw), text: text}, true
}

// editRaw returns the edit that replaces the JSON value r (found in data) with raw.
func editRaw(data string, r gjson.Result, raw string) (edit, bool) {
	if !r.Exists() || r.Index <= 0 || r.Index+len(r.Raw) > len(data) || data[r.Index:r.Index+len(r.Raw)] != r.Raw {
		return edit{}, false
	}
	return edit{start: r.Index, end: r.Index + len(r.Raw), text: raw, raw: true}, true
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string literal. Invalid UTF-8 becomes U+FFFD, and
// U+2028/U+2029 are escaped so the result is also safe inside JavaScript.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// jsonString returns s as a JSON string literal.
func jsonString(s string) string {
	return string(appendJSONString(make([]byte, 0, len(s)+2), s))
}

// path is a gjson/sjson path under construction. ok is false once it passed a duplicate
// key: such paths would reach the wrong occurrence.
type path struct {
	s  string
	ok bool
}

var root = path{ok: true}

func (p path) key(k string) path {
	if !p.ok {
		return p
	}
	k = escapeKey(k)
	if p.s == "" {
		return path{s: k, ok: true}
	}
	return path{s: p.s + "." + k, ok: true}
}

func (p path) index(i int) path {
	if !p.ok {
		return p
	}
	if p.s == "" {
		return path{s: strconv.Itoa(i), ok: true}
	}
	return path{s: p.s + "." + strconv.Itoa(i), ok: true}
}

func (p path) String() string {
	if !p.ok {
		return ""
	}
	return p.s
}

// escapeKey escapes one object key for gjson and sjson paths. gjson.Escape leaves ':'
// alone, but sjson reads a leading ':' as "numeric key", so it is escaped as well (gjson
// accepts the escape too).
func escapeKey(k string) string {
	k = gjson.Escape(k)
	if strings.IndexByte(k, ':') < 0 {
		return k
	}
	return strings.ReplaceAll(k, ":", `\:`)
}
