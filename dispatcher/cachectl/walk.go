package cachectl

import (
	"strings"

	"github.com/sluice-gateway/sluice/internal/jsonscan"
)

// The body is read in one forward pass over its bytes, not with gjson's ForEach, which
// re-parses every subtree at each level it descends and unescapes every string it passes
// (~240 µs and 44 allocations for a full walk of a 37 KB Claude Code body). Only strings
// are jumped over with IndexByte; nothing is decoded but escaped member names.

// maxDepth bounds the descent below messages, system and tools. Anthropic's deepest
// cache_control sits at depth 5 (messages[].content[].content[]); deeper values are
// skipped whole and their members left alone.
const maxDepth = 64

// span is body[start:end].
type span struct{ start, end int }

// walker finds the cache_control members of a body (see [Strip] for where it looks).
type walker struct {
	s string
	// first stops the walk at the first member found ([HasCacheControl]).
	first bool
	found bool
	// The byte ranges to remove, each a member with its separating comma, in order and
	// disjoint: the first ones in cuts (an array, so the walker needs no allocation), the
	// rest in more.
	cuts [8]span
	n    int
	more []span
}

func (w *walker) cut(start, end int) {
	if w.n < len(w.cuts) {
		w.cuts[w.n] = span{start, end}
		w.n++
		return
	}
	w.more = append(w.more, span{start, end})
}

// walk reads the body and reports whether it is a JSON object read to its end (false
// also when first stopped the walk).
func (w *walker) walk() bool {
	i := jsonscan.SkipSpace(w.s, 0)
	if i >= len(w.s) || w.s[i] != '{' {
		return false
	}
	return w.object(i, 0) >= 0
}

// object walks the object at s[i] and returns its end, or -1. depth 0 is the body.
func (w *walker) object(i, depth int) int {
	s := w.s
	// Cutting a member takes the comma before it (back to the end of the previous value),
	// or, while no member was kept yet, the comma after it (up to the next kept key), so
	// the object stays valid whichever members go.
	prevEnd, kept, lead := -1, false, -1
	end := members(s, i, func(key string, ks, vs int) int {
		var ve int
		if strings.EqualFold(key, "cache_control") {
			if w.found = true; w.first {
				return -1
			}
			if ve = jsonscan.ValueEnd(s, vs); ve < 0 {
				return -1
			}
			if kept {
				w.cut(prevEnd, ve)
			} else if lead < 0 {
				lead = ks
			}
		} else {
			if lead >= 0 {
				w.cut(lead, ks)
				lead = -1
			}
			kept = true
			if descend(key, depth) {
				ve = w.value(vs, depth+1)
			} else {
				ve = jsonscan.ValueEnd(s, vs)
			}
			if ve < 0 {
				return -1
			}
		}
		prevEnd = ve
		return ve
	})
	if end >= 0 && lead >= 0 {
		w.cut(lead, prevEnd)
	}
	return end
}

// descend reports whether the value of member key of an object at depth is searched.
func descend(key string, depth int) bool {
	if depth == 0 {
		return strings.EqualFold(key, "messages") || strings.EqualFold(key, "system") || strings.EqualFold(key, "tools")
	}
	if depth >= maxDepth {
		return false
	}
	// Data, not request structure: a tool's JSON schema, tool-call arguments, and maps keyed
	// by user-chosen names may hold a member called cache_control of their own.
	for _, k := range [...]string{"input_schema", "parameters", "input", "input_examples", "arguments", "configs"} {
		if strings.EqualFold(key, k) {
			return false
		}
	}
	return true
}

// value walks the value at s[i] and returns its end, or -1.
func (w *walker) value(i, depth int) int {
	if i >= len(w.s) {
		return -1
	}
	switch w.s[i] {
	case '{':
		return w.object(i, depth)
	case '[':
		return w.array(i, depth)
	}
	return jsonscan.ValueEnd(w.s, i)
}

func (w *walker) array(i, depth int) int {
	s := w.s
	for i++; ; {
		i = jsonscan.SkipSpace(s, i)
		if i >= len(s) {
			return -1
		}
		switch s[i] {
		case ']':
			return i + 1
		case ',':
			i++
			continue
		}
		if i = w.value(i, depth); i < 0 {
			return -1
		}
	}
}
