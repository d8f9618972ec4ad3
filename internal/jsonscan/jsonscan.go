// Package jsonscan is the byte-level JSON reading that hot-path scanners share: positions
// of values in a raw body, found with one forward pass and IndexByte over strings, without
// decoding or allocating. Every function is lenient: it reads valid JSON exactly, never
// panics on anything else, and reports -1 where the input turned out malformed.
package jsonscan

import (
	"strings"
	"unsafe"
)

// String returns body as a string without copying. The caller must not modify body while
// the string is in use.
func String(body []byte) string {
	if len(body) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(body), len(body))
}

// IsSpace reports whether c is JSON whitespace.
func IsSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// SkipSpace returns the index of the first non-space byte at or after i.
func SkipSpace(s string, i int) int {
	for i < len(s) && IsSpace(s[i]) {
		i++
	}
	return i
}

// StringEnd returns the index just past the closing quote of the string opening at s[i],
// or -1 if it is not terminated.
func StringEnd(s string, i int) int {
	i++
	for {
		j := strings.IndexByte(s[i:], '"')
		if j < 0 {
			return -1
		}
		j += i
		n := 0
		for k := j - 1; k >= i && s[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return j + 1
		}
		i = j + 1
	}
}

// ValueEnd returns the index just past the value starting at s[i] (not a space), or -1.
func ValueEnd(s string, i int) int {
	if i >= len(s) {
		return -1
	}
	switch s[i] {
	case '"':
		return StringEnd(s, i)
	case '{', '[':
		depth := 0
		for i < len(s) {
			switch s[i] {
			case '"':
				if i = StringEnd(s, i); i < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	case '}', ']', ',', ':':
		return -1
	}
	j := i
	for j < len(s) && !IsSpace(s[j]) && s[j] != ',' && s[j] != '}' && s[j] != ']' && s[j] != ':' {
		j++
	}
	return j
}

// Members calls fn for every member of the object opening at s[i] with the member's raw key
// (the text between its quotes, escapes undecoded), the index of the key's opening quote
// and the index of its value. fn returns the end of the value, or -1 to stop. Members
// returns the end of the object, or -1.
func Members(s string, i int, fn func(rawKey string, keyStart, valueStart int) int) int {
	if i >= len(s) || s[i] != '{' {
		return -1
	}
	for i++; ; {
		i = SkipSpace(s, i)
		if i >= len(s) {
			return -1
		}
		switch s[i] {
		case '}':
			return i + 1
		case ',':
			i++
			continue
		case '"':
		default:
			return -1
		}
		ks := i
		ke := StringEnd(s, i)
		if ke < 0 {
			return -1
		}
		if i = SkipSpace(s, ke); i >= len(s) || s[i] != ':' {
			return -1
		}
		if i = fn(s[ks+1:ke-1], ks, SkipSpace(s, i+1)); i < 0 {
			return -1
		}
	}
}
