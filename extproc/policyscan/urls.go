package policyscan

import (
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/sluice-gateway/sluice/internal/jsonscan"
)

// urlScope are the top-level members whose strings the model or the provider reads.
var urlScope = [...]string{"messages", "input", "system", "instructions", "tools", "functions", "mcp_servers", "prompt"}

// URLs calls fn with every http or https URL in the strings of the members a provider
// reads: messages, input, system, instructions, tools, functions (legacy chat tools),
// mcp_servers and prompt (Responses prompt template variables), at any depth, keys
// included. Other members (model, metadata, …) are not read.
//
//   - In text, a URL starts at "http://" or "https://" (any case) and runs to a space or
//     control character, or one of " ' < > ` }. A ")" or "]" ends it unless it closes a
//     "(" or "[" of the URL itself, so "[x](https://a.b/c)" gives "https://a.b/c" while
//     Wikipedia's "…/Go_(programming_language)" and "http://[::1]:8080/" stay whole.
//     Trailing . , ; : ! ? are dropped.
//   - The value of a url, image_url, file_url or server_url member that starts with
//     http(s):// is reported whole (surrounding spaces trimmed): that is the address the
//     provider fetches, whatever characters it holds.
//   - A string starting with "data:" is skipped, as are the values of "$schema" and "$id"
//     (a JSON Schema's identifiers, which every Claude Code tool carries and nobody
//     fetches).
//   - Escapes are decoded first, so "https:\/\/evil.com" is "https://evil.com".
//
// Addresses without a scheme ("www.example.com", "//example.com") are not reported. Each
// occurrence is reported once; the same URL at two places is reported twice.
func URLs(body []byte, fn func(url string) bool) {
	sc := urlScanner{fn: fn}
	defer sc.release()
	s := jsonscan.String(body)
	members(s, jsonscan.SkipSpace(s, 0), func(k string, at int) int {
		for _, want := range urlScope {
			if strings.EqualFold(k, want) {
				return sc.value(s, at)
			}
		}
		return jsonscan.ValueEnd(s, at)
	})
}

// fieldKind says how the string value of a member is read.
type fieldKind uint8

const (
	kindText fieldKind = iota // scanned for URLs
	kindURL                   // an address: reported whole
	kindSkip                  // not scanned
)

func kindOf(key string) fieldKind {
	switch {
	case strings.EqualFold(key, "url"), strings.EqualFold(key, "image_url"),
		strings.EqualFold(key, "file_url"), strings.EqualFold(key, "server_url"):
		return kindURL
	case key == "$schema", key == "$id":
		return kindSkip
	}
	return kindText
}

// scratch holds decoded strings between calls.
var scratch = sync.Pool{New: func() any { return new([]byte) }}

type urlScanner struct {
	fn  func(string) bool
	buf *[]byte // from scratch, taken on first use
}

func (sc *urlScanner) release() {
	if sc.buf != nil && cap(*sc.buf) <= 1<<20 {
		*sc.buf = (*sc.buf)[:0]
		scratch.Put(sc.buf)
	}
}

// value scans the strings of the value starting at s[i] in one pass and returns the end of
// the value, or -1 when fn asked to stop or the value is malformed.
func (sc *urlScanner) value(s string, i int) int {
	depth := 0
	valueAt, valueKind := -1, kindText // the string that is the value of the last key
	for i < len(s) {
		switch c := s[i]; c {
		case '"':
			end := jsonscan.StringEnd(s, i)
			if end < 0 {
				return -1
			}
			raw := s[i+1 : end-1]
			kind := kindText
			if i == valueAt {
				kind = valueKind
			}
			if j := jsonscan.SkipSpace(s, end); depth > 0 && j < len(s) && s[j] == ':' {
				// A key: scanned as text, and it says how its value is read.
				valueAt, valueKind = jsonscan.SkipSpace(s, j+1), kindOf(decode(raw))
				end = j + 1
			}
			if !sc.text(raw, kind) {
				return -1
			}
			if depth == 0 {
				return end
			}
			i = end
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth--; depth <= 0 {
				return i + 1
			}
		default:
			if depth == 0 {
				return jsonscan.ValueEnd(s, i)
			}
		}
		i++
	}
	return -1
}

// text reports the URLs in the JSON string content raw (escaped, without its quotes).
func (sc *urlScanner) text(raw string, kind fieldKind) bool {
	if kind == kindSkip {
		return true
	}
	t, owned := raw, true
	if strings.IndexByte(raw, '\\') >= 0 {
		// Decoded, the string holds "://" only if raw holds ':' or a \u escape.
		if strings.IndexByte(raw, ':') < 0 && !strings.Contains(raw, `\u`) {
			return true
		}
		if sc.buf == nil {
			sc.buf = scratch.Get().(*[]byte)
		}
		*sc.buf = unescape((*sc.buf)[:0], raw)
		t, owned = unsafe.String(unsafe.SliceData(*sc.buf), len(*sc.buf)), false
	}
	return sc.scan(t, owned, kind)
}

// scan reports the URLs in the decoded string t. owned is false when t is the scratch
// buffer, which the next string reuses: the URLs are then copied.
func (sc *urlScanner) scan(t string, owned bool, kind fieldKind) bool {
	if kind == kindSkip {
		return true
	}
	report := func(u string) bool {
		if !owned {
			u = strings.Clone(u)
		}
		return sc.fn(u)
	}
	trimmed := strings.TrimSpace(t)
	if hasPrefixFold(trimmed, "data:") {
		return true
	}
	if kind == kindURL && schemeLen(trimmed) > 0 && len(trimmed) > schemeLen(trimmed) {
		return report(trimmed)
	}
	for from := 0; ; {
		k := strings.Index(t[from:], "://")
		if k < 0 {
			return true
		}
		p := from + k
		from = p + 3
		start := -1
		switch {
		case p >= 5 && strings.EqualFold(t[p-5:p], "https"):
			start = p - 5
		case p >= 4 && strings.EqualFold(t[p-4:p], "http"):
			start = p - 4
		}
		if start < 0 {
			continue
		}
		end := urlEnd(t, from)
		if end > from && !report(t[start:end]) {
			return false
		}
		from = max(from, end)
	}
}

// urlEnd returns where the URL whose host starts at t[i] ends; i itself if it is empty.
func urlEnd(t string, i int) int {
	start := i
	parens, brackets := 0, 0
scan:
	for i < len(t) {
		c := t[i]
		switch {
		case c <= ' ' || c == 0x7f || c == '"' || c == '\'' || c == '<' || c == '>' || c == '`' || c == '}':
			break scan
		case c == '(':
			parens++
		case c == '[':
			brackets++
		case c == ')':
			if parens == 0 {
				break scan
			}
			parens--
		case c == ']':
			if brackets == 0 {
				break scan
			}
			brackets--
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRuneInString(t[i:])
			if unicode.IsSpace(r) {
				break scan
			}
			i += n
			continue
		}
		i++
	}
	for i > start && strings.IndexByte(".,;:!?", t[i-1]) >= 0 {
		i--
	}
	return i
}

// schemeLen returns the length of the "http://" or "https://" prefix of s (any case),
// or 0.
func schemeLen(s string) int {
	switch {
	case hasPrefixFold(s, "http://"):
		return len("http://")
	case hasPrefixFold(s, "https://"):
		return len("https://")
	}
	return 0
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
