package policyscan

import (
	"strings"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/sluice-gateway/sluice/internal/jsonscan"
)

// A single forward pass over the raw bytes, instead of gjson's ForEach: ForEach re-parses
// a subtree at every level it descends and unescapes every string value it passes (each
// tool description, each message text), which on a 37 KB Claude Code body cost ~240 µs
// and 44 allocations for a full walk. Here strings are skipped with IndexByte and decoded
// only when their content is needed and escaped.
//
// Every function is lenient (it reads valid JSON exactly and never panics on anything
// else) and returns false once the caller's callback asked to stop or the input turned out
// to be malformed, so iteration ends either way.

// members calls fn with the decoded key and the index of the value of every member of the
// object opening at s[i]; see [jsonscan.Members].
func members(s string, i int, fn func(key string, at int) int) int {
	return jsonscan.Members(s, i, func(raw string, _, at int) int { return fn(decode(raw), at) })
}

// eachMember calls fn with every member of the object raw (its decoded key and raw value)
// until fn returns false. It reports whether the iteration ran to the end.
func eachMember(raw string, fn func(key, val string) bool) bool {
	i := jsonscan.SkipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return true // not an object: nothing to visit
	}
	return members(raw, i, func(key string, at int) int {
		end := jsonscan.ValueEnd(raw, at)
		if end < 0 || !fn(key, raw[at:end]) {
			return -1
		}
		return end
	}) >= 0
}

// eachElement calls fn with every element of the array raw until fn returns false. It
// reports whether the iteration ran to the end.
func eachElement(raw string, fn func(val string) bool) bool {
	i := jsonscan.SkipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '[' {
		return true // not an array: nothing to visit
	}
	for i++; ; {
		i = jsonscan.SkipSpace(raw, i)
		if i >= len(raw) {
			return false
		}
		switch raw[i] {
		case ']':
			return true
		case ',':
			i++
			continue
		}
		end := jsonscan.ValueEnd(raw, i)
		if end < 0 || !fn(raw[i:end]) {
			return false
		}
		i = end
	}
}

// isObject reports whether raw is a JSON object.
func isObject(raw string) bool { return len(raw) > 0 && raw[0] == '{' }

// str returns the decoded value of the JSON string raw, and false if raw is not a string.
func str(raw string) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	return decode(raw[1 : len(raw)-1]), true
}

// decode returns the content of a JSON string (without its quotes) unescaped. Without a
// backslash it is s itself, so nothing is allocated.
func decode(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	b := unescape(make([]byte, 0, len(s)), s)
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// unescape appends the content of a JSON string, without its quotes, to dst with its
// escapes decoded as encoding/json does: an unpaired surrogate becomes U+FFFD. An invalid
// escape is copied as is (such a body is refused upstream anyway).
func unescape(dst []byte, s string) []byte {
	for {
		i := strings.IndexByte(s, '\\')
		if i < 0 || i+1 >= len(s) {
			return append(dst, s...)
		}
		dst = append(dst, s[:i]...)
		s = s[i:]
		switch s[1] {
		case '"', '\\', '/':
			dst = append(dst, s[1])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(s[2:])
			if !ok {
				dst = append(dst, s[:2]...)
				break
			}
			n := 6
			if utf16.IsSurrogate(r) {
				r2, ok := rune(-1), false
				if len(s) >= 12 && s[6] == '\\' && s[7] == 'u' {
					r2, ok = hex4(s[8:])
				}
				if r = utf16.DecodeRune(r, r2); ok && r != utf8.RuneError {
					n = 12
				}
			}
			dst = utf8.AppendRune(dst, r)
			s = s[n:]
			continue
		default:
			dst = append(dst, s[:2]...)
		}
		s = s[2:]
	}
}

func hex4(s string) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	var r rune
	for i := range 4 {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
