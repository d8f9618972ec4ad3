package guardrail

import (
	"context"
	"unicode/utf8"
	"unsafe"

	"github.com/sluice-gateway/sluice/internal/config"
)

// Streaming limits.
const (
	// holdBytes of the newest text are always held back: the next chunk may complete a
	// match that starts in them ("alice@exam" + "ple.com"). Matches that can be longer
	// (keys, tokens, long addresses) are held whole by the trailing-word rule instead.
	holdBytes = 64
	// Released text stays in front of the held text so the scanners see what precedes
	// it, as they would in the whole text (a digit right before a card number makes it no
	// card): from the last separator within maxContextBytes, else contextBytes.
	contextBytes    = 64
	maxContextBytes = 256
	// maxHoldBytes bounds what the detectors hold back. Past it the held text is released
	// with its matches redacted, a match that is still growing included, whose remainder
	// is then dropped as it arrives; a blocking guardrail's match blocks instead.
	maxHoldBytes = 16 << 10
	// openContextBytes of such a growing match are kept so that its scanner recognizes
	// the remainder.
	openContextBytes = 256
	// confirmBytes must follow a match before a blocking guardrail blocks on it mid-stream:
	// one separator and one digit can still turn it into something else ("4111 1111 1111
	// 1111" + " 2" is no card).
	confirmBytes = 2
)

// Stream inspects one channel of streamed text (the assistant's content, say) for the
// guardrails that inspect [config.DirectionStream]. Not safe for concurrent use: one
// Stream per channel per request.
//
// The text passes through one detector stage, which runs the scanners of every detector
// guardrail over the same buffer, as [Check] does over a whole text, and holds back the
// end of what it has seen until the next chunk shows no match can reach into it: about
// holdBytes, however many detectors there are. A blocking guardrail blocks as soon as a
// match of its is confirmed, whatever other matches overlap it; when several are
// confirmed at once, the first guardrail in order names the block. Then the text passes
// through one stage per webhook, each collecting a window of text per call. What comes
// out of the last stage is safe to release.
//
// One stage for all detectors, rather than one per detector, keeps the lag at one
// window, and lets a blocking guardrail see text as soon as it arrives rather than after
// every detector before it has released it.
type Stream struct {
	ctx   context.Context
	meta  Meta
	det   *stage // nil: no detector inspects streams
	hooks []*hookStage

	blocked, done     bool
	guardrail, reason string
}

// NewStream returns a Stream for the guardrails of gs that inspect streams. ctx bounds
// its webhook calls.
func NewStream(ctx context.Context, gs []*Guardrail, m Meta) *Stream {
	s := &Stream{ctx: ctx, meta: m}
	var dets []*Guardrail
	block := false
	for _, g := range gs {
		switch {
		case !g.Has(config.DirectionStream):
		case g.det != nil:
			dets = append(dets, g)
			block = block || g.det.block
		case g.hook != nil:
			s.hooks = append(s.hooks, &hookStage{g: g})
		}
	}
	if dets != nil {
		s.det = &stage{ds: detectors{dets, config.DirectionStream}, block: block}
	}
	return s
}

// Push appends text, the next chunk of the channel, and returns the text now safe to
// release to the client, already redacted; "" while text is held back. blocked means a
// guardrail blocked: the caller ends the stream with an error ([Stream.Reason] says
// why), and every later call returns ("", true). Push after Flush releases nothing.
func (s *Stream) Push(text string) (release string, blocked bool) {
	if s.blocked {
		return "", true
	}
	if s.done {
		return "", false
	}
	return s.run(text, false)
}

// Flush ends the channel and returns everything still held, evaluated and redacted.
func (s *Stream) Flush() (release string, blocked bool) {
	if s.blocked {
		return "", true
	}
	if s.done {
		return "", false
	}
	s.done = true
	return s.run("", true)
}

// Reason returns the guardrail that blocked the stream and the client-safe reason, or
// two empty strings.
func (s *Stream) Reason() (guardrail, reason string) { return s.guardrail, s.reason }

func (s *Stream) run(text string, final bool) (string, bool) {
	t := text
	if st := s.det; st != nil {
		if text == "" && !final {
			return "", false // nothing new
		}
		st.buf = append(st.buf, text...)
		out, sc := st.step(final)
		if sc >= 0 {
			g, scn := st.ds.scanner(sc)
			return s.block(st.ds.gs[g].id, scn.reason)
		}
		t = string(out)
	}
	for _, h := range s.hooks {
		if t == "" && !final {
			return "", false
		}
		r, o := h.step(s, t, final)
		if o.action == Block {
			return s.block(h.g.id, o.reason)
		}
		t = r
	}
	return t, false
}

func (s *Stream) block(guardrail, reason string) (string, bool) {
	s.blocked, s.guardrail, s.reason = true, guardrail, reason
	s.det, s.hooks = nil, nil // drop what was held
	return "", true
}

// stage runs the detectors of a stream over it.
type stage struct {
	ds    detectors
	block bool // some detector blocks
	// buf[:rel] is context: text already released, kept for the scanners. buf[rel:] is
	// held. Both are the raw text: redaction applies to what is released.
	buf []byte
	rel int
	// open: the last release ended in the placeholder of a match that was still growing;
	// buf[:rel] is then the start of that match, so that the scanner recognizes the rest
	// of it, which is dropped.
	open bool
	// buf[:red] ends in text that was released as a placeholder (red ≤ rel; red == rel
	// when open). A match that starts there continues that redaction, as overlapping
	// matches merge in Check: what is left of it is dropped, with no placeholder of its
	// own.
	red int
	ms  []match // scratch
	out []byte  // scratch
}

// step scans the buffer and returns the text that is now safe to release (at the end of
// the channel, when final, everything), valid until the next step, or the scanner (its
// number in st.ds) of a blocking guardrail's confirmed match (else -1).
func (st *stage) step(final bool) ([]byte, int) {
	// The scanners only read s during this call, and buf is not written meanwhile.
	s := unsafe.String(unsafe.SliceData(st.buf), len(st.buf))
	n := len(s)
	st.ms = st.ds.scan(s, st.ms)
	ms := st.ms
	cut, forced := n, false
	if !final {
		cut = st.holdPoint(s, ms)
		if n-cut > maxHoldBytes {
			cut, forced = runeStart(s, n-holdBytes, st.rel), true
		}
	}
	if st.block {
		if sc := st.confirmed(ms, n, cut, final, forced); sc >= 0 {
			return nil, sc
		}
	}
	// Every blocking guardrail's match is now in the context or held: only redactions
	// remain before the cut.
	ms = st.ds.redactions(ms)
	out, pos, open, red := st.out[:0], st.rel, -1, st.red
	for i, m := range ms {
		if m.end <= st.rel {
			continue
		}
		if m.start >= cut {
			break
		}
		if m.start < st.rel && m.end > cut && !final && !forced && !st.open {
			// The match began in released text and may still grow, or vanish: holdPoint
			// could not hold its start, so hold the rest (cut == rel here).
			break
		}
		_, sc := st.ds.scanner(m.sc)
		ph := sc.placeholder
		if m.start >= st.rel {
			out = append(out, s[pos:m.start]...)
			out = append(out, ph...)
		} else if m.start >= st.red {
			// The match began in released text: the scanner could not see it then. Redact
			// what is left of it.
			out = append(out, ph...)
		}
		// A match that runs past the cut (forced, or the rest of an open one) is redacted
		// whole. If it is still growing, its last holdBytes stay held: they may begin
		// what ends it, such as a PEM END line.
		pos, red = m.end, m.end
		cut = max(cut, m.end)
		if m.end == n && !final {
			open = i
			pos = max(runeStart(s, n-holdBytes, st.rel), st.rel)
			cut = pos
		}
	}
	if pos < cut {
		out = append(out, s[pos:cut]...)
	}
	st.out = out
	st.keep(ms, cut, open, red, final)
	return out, -1
}

// confirmed returns the scanner of the blocking guardrail's match in ms that is
// confirmed (followed by confirmBytes, or about to be released whole), or -1. When
// several are, the first guardrail in order wins, and its leftmost match.
func (st *stage) confirmed(ms []match, n, cut int, final, forced bool) int {
	best, bestG := -1, len(st.ds.gs)
	for _, m := range ms {
		// A match that ends in the context is an artifact of cutting the context. So is
		// one that starts in the context of an open match: that context is spliced
		// to the held text, and a match across the splice is in no text.
		if m.end <= st.rel || st.open && m.start < st.rel {
			continue
		}
		if !final && !(forced && m.start < cut) && m.end+confirmBytes > n {
			continue
		}
		if g, block := st.ds.blocks(m.sc); block && g < bestG {
			best, bestG = m.sc, g
		}
	}
	return best
}

// holdPoint returns where the released part of the buffer ends: holdBytes before the
// end, moved back to the start of a trailing word and of any match that spans it or
// reaches the end, never inside a UTF-8 sequence, never before rel. ms are a scan's
// matches, sorted by start; they may overlap.
func (st *stage) holdPoint(s string, ms []match) int {
	n := len(s)
	cut := n - holdBytes
	if cut <= st.rel {
		return st.rel
	}
	// A word that reaches the end may be a key, a token or an address still being
	// written, longer than holdBytes: hold all of it.
	w := n
	for w > st.rel && is(s[w-1], cHold) {
		w--
	}
	cut = runeStart(s, min(cut, w), st.rel)
	for i := len(ms) - 1; i >= 0; i-- {
		if m := ms[i]; m.start < cut && (m.end > cut || m.end == n) {
			cut = m.start
		}
	}
	return max(cut, st.rel)
}

// keep drops the released text from the buffer but for its context. ms are the
// redactions, open the index of one still growing (else -1), and red the end of the
// last one released (see stage.red).
func (st *stage) keep(ms []match, cut, open, red int, final bool) {
	st.open = open >= 0
	switch {
	case final:
		st.buf, st.rel, st.open, st.red = st.buf[:0], 0, false, 0
		return
	case st.open:
		// The context becomes the start of the match, then what is held of its end.
		m := ms[open]
		h := min(m.start+openContextBytes, cut)
		k := copy(st.buf, st.buf[m.start:h])
		st.rel, st.red = k, k
		k += copy(st.buf[k:], st.buf[cut:])
		st.buf = st.buf[:k]
	default:
		from := contextStart(st.buf, cut)
		k := copy(st.buf, st.buf[from:])
		st.buf, st.rel, st.red = st.buf[:k], cut-from, max(0, red-from)
	}
	// One huge chunk should not pin a huge buffer for the rest of the stream.
	if cap(st.buf) > 4*maxHoldBytes && len(st.buf) < maxHoldBytes {
		st.buf = append([]byte(nil), st.buf...)
	}
}

// contextStart returns where the context kept before the held text b[cut:] starts: at
// the last separator before cut that no entity crosses, so that a scanner looking back
// from the held text sees the same start of a word or number as in the whole text. A
// separator is a space after something other than a digit or a parenthesis (a spaced
// card or phone number goes on across it), or a non-ASCII character, which no entity
// contains. Without one in the last maxContextBytes, it keeps contextBytes.
func contextStart(b []byte, cut int) int {
	lo := max(0, cut-maxContextBytes)
	for p := cut; p > lo; p-- {
		c := b[p-1]
		switch {
		case c == ' ' || c == '\n' || c == '\t' || c == '\r':
			if p < 2 || !isDigit(b[p-2]) && b[p-2] != ')' && b[p-2] != '(' && b[p-2] != '+' {
				return p
			}
		case c >= utf8.RuneSelf:
			if p == cut || utf8.RuneStart(b[p]) {
				return p
			}
		}
	}
	if lo == 0 {
		return 0
	}
	return cut - contextBytes
}

// runeStart moves i back to the start of the UTF-8 sequence it is in, not before lo.
func runeStart(s string, i, lo int) int {
	for k := 0; k < utf8.UTFMax-1 && i > lo && i < len(s) && !utf8.RuneStart(s[i]); k++ {
		i--
	}
	return i
}

// hookStage runs one webhook over a stream, one window of text per call.
type hookStage struct {
	g     *Guardrail
	buf   []byte
	runes int
}

// step adds t and, once a window is full (or at the end), asks the webhook about it. It
// returns the text to pass on and the webhook's outcome.
func (h *hookStage) step(s *Stream, t string, final bool) (string, outcome) {
	h.buf = append(h.buf, t...)
	h.runes += utf8.RuneCountInString(t)
	if !final && h.runes < h.g.hook.window {
		return "", outcome{}
	}
	n := len(h.buf)
	if !final {
		n = completeRunes(h.buf) // never send half a character
	}
	if n == 0 {
		return "", outcome{}
	}
	window := string(h.buf[:n])
	h.buf = h.buf[:copy(h.buf, h.buf[n:])]
	h.runes = utf8.RuneCount(h.buf)
	o := h.g.evaluate(s.ctx, config.DirectionStream, s.meta, []string{window})
	if o.action == Modify {
		return o.texts[0], o
	}
	return window, o
}

// completeRunes returns the length of b without a trailing incomplete UTF-8 sequence.
func completeRunes(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if utf8.FullRune(b[i:]) {
				return len(b)
			}
			return i
		}
	}
	return len(b)
}
