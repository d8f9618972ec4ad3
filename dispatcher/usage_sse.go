package dispatcher

import "bytes"

// maxSSEEvent bounds the bytes the scanner holds for one line or one event's data. An event
// that carries usage is a few hundred bytes; a longer one (a huge content delta) is skipped.
const maxSSEEvent = 1 << 20

// sseScanner splits a server-sent event stream, fed in pieces cut at arbitrary bytes, into
// events (WHATWG HTML §9.2: lines end with "\r\n", "\n" or "\r"; "data:" with or without
// one space; several data lines join with "\n"), and hands the events that can carry usage
// to meterFindings.
//
// It copies as little as it can: a line or an event that lies whole inside one piece is read
// in place, and only the unfinished tail of a piece (one partial line and the current
// event's data) is copied, so memory stays bounded by one partial event.
type sseScanner struct {
	dialect dialect

	line    []byte // the start of a line cut by the end of the previous piece
	cr      bool   // the previous piece ended with '\r': a '\n' starting this one ends no line
	loneCR  bool   // the stream ends lines with a lone '\r' (legal, but no provider does)
	tooLong bool   // the current line outgrew maxSSEEvent; it is dropped

	// The current event.
	event []byte // its type (the "event:" line), in eventBuf
	data  []byte // its data so far; points into the piece being fed unless owned
	lines int    // data lines so far
	owned bool   // data is dataBuf
	skip  bool   // the event cannot carry usage, or a line of it was dropped: not decoded

	eventBuf [32]byte
	dataBuf  []byte
}

// feed scans the next piece of the stream; p is only borrowed.
func (s *sseScanner) feed(p []byte, f *meterFindings) {
	if len(p) == 0 {
		return
	}
	if s.cr {
		s.cr = false
		if len(p) > 0 && p[0] == '\n' {
			p = p[1:]
		}
	}
	for len(p) > 0 {
		end, next := s.lineEnd(p)
		if end < 0 {
			s.keepPartialLine(p)
			break
		}
		line := p[:end]
		p = p[next:]
		stable := true // line lies in p, which outlives this call
		if len(s.line) > 0 || s.tooLong {
			if s.tooLong || len(s.line)+len(line) > maxSSEEvent {
				s.line, s.tooLong = s.line[:0], false
				s.skip = true
				continue
			}
			s.line = append(s.line, line...)
			line, stable = s.line, false
			s.line = s.line[:0] // line stays valid until the next append to s.line
			if cap(s.line) > 64<<10 {
				s.line = nil // one long line must not pin its buffer for the rest of the stream
			}
		}
		s.handleLine(line, stable, f)
	}
	// The event goes on in the next piece: its data must outlive p.
	if !s.owned && s.lines > 0 {
		s.dataBuf = append(s.dataBuf[:0], s.data...)
		s.data, s.owned = s.dataBuf, true
	}
}

// lineEnd finds the first line end in p: the line is p[:end] and what follows starts at
// p[next:]; end is -1 when p holds no line end.
//
// Providers end lines with "\n" or "\r\n", so "\r" is looked for only where no "\n" was
// found; a "\r" there that is not the piece's last byte means the stream uses lone CRs,
// and from then on every "\r" ends a line. A piece's last "\r" ends its line either way,
// and a "\n" starting the next piece is then skipped.
func (s *sseScanner) lineEnd(p []byte) (end, next int) {
	if !s.loneCR {
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			if i > 0 && p[i-1] == '\r' {
				return i - 1, i + 1
			}
			return i, i + 1
		}
		r := bytes.IndexByte(p, '\r')
		switch {
		case r < 0:
			return -1, 0
		case r == len(p)-1:
			s.cr = true
			return r, r + 1
		}
		s.loneCR = true
	}
	end = bytes.IndexByte(p, '\n')
	head := p
	if end >= 0 {
		head = p[:end]
	}
	if r := bytes.IndexByte(head, '\r'); r >= 0 {
		end = r
	}
	switch {
	case end < 0:
		return -1, 0
	case p[end] == '\n':
		return end, end + 1
	case end+1 == len(p):
		s.cr = true
		return end, end + 1
	case p[end+1] == '\n':
		return end, end + 2
	}
	return end, end + 1
}

func (s *sseScanner) keepPartialLine(p []byte) {
	if s.tooLong {
		return
	}
	if len(s.line)+len(p) > maxSSEEvent {
		s.line, s.tooLong = s.line[:0], true
		return
	}
	s.line = append(s.line, p...)
}

func (s *sseScanner) handleLine(line []byte, stable bool, f *meterFindings) {
	if len(line) == 0 {
		s.dispatch(f)
		return
	}
	// Only two fields matter; comments (":…"), "id" and "retry" lines are ignored.
	// (string(b[:n]) == "lit" compiles to a load and compare.)
	switch {
	case len(line) >= 4 && string(line[:4]) == "data":
		if v, ok := fieldValue(line[4:]); ok {
			s.addData(v, stable)
		}
	case len(line) >= 5 && string(line[:5]) == "event":
		if v, ok := fieldValue(line[5:]); ok {
			n := copy(s.eventBuf[:], v)
			s.event = s.eventBuf[:n]
			if s.dialect == dialectAnthropicMsgs && !anthropicUsageEvent(s.event) ||
				s.dialect == dialectOpenAIResponses && !responsesTerminal(s.event) {
				s.skip = true
			}
		}
	}
}

// fieldValue returns the value of a field line whose name was cut off: rest is "" (a name
// alone: empty value), or ":" and the value with at most one leading space dropped. ok is
// false when the name was only a prefix of a longer one ("database:").
func fieldValue(rest []byte) (v []byte, ok bool) {
	if len(rest) == 0 {
		return rest, true
	}
	if rest[0] != ':' {
		return nil, false
	}
	rest = rest[1:]
	if len(rest) > 0 && rest[0] == ' ' {
		rest = rest[1:]
	}
	return rest, true
}

// anthropicUsageEvent reports whether an Anthropic event type can carry usage, model or stop
// reason.
func anthropicUsageEvent(typ []byte) bool {
	return string(typ) == "message_start" || string(typ) == "message_delta"
}

// addData appends one data line's value to the event. A first line that lies in the piece
// (stable) is only pointed at.
func (s *sseScanner) addData(v []byte, stable bool) {
	if s.skip {
		return
	}
	if s.lines == 0 && stable {
		s.data, s.lines = v, 1
		return
	}
	if len(s.data)+1+len(v) > maxSSEEvent {
		s.skip = true
		return
	}
	if !s.owned {
		s.dataBuf = append(s.dataBuf[:0], s.data...)
		s.owned = true
	}
	if s.lines > 0 {
		s.dataBuf = append(s.dataBuf, '\n')
	}
	s.dataBuf = append(s.dataBuf, v...)
	s.data = s.dataBuf
	s.lines++
}

// dispatch ends the current event.
func (s *sseScanner) dispatch(f *meterFindings) {
	if !s.skip && len(s.data) > 0 {
		switch s.dialect {
		case dialectOpenAIChat:
			f.openAIChunk(s.data)
		case dialectAnthropicMsgs:
			f.anthropicEvent(string(s.event), s.data)
		case dialectOpenAIResponses:
			// OpenAI names every event; without a name, only a terminal type is decoded.
			if len(s.event) > 0 || bytes.Contains(s.data, []byte(`"response.completed"`)) ||
				bytes.Contains(s.data, []byte(`"response.incomplete"`)) || bytes.Contains(s.data, []byte(`"response.failed"`)) {
				f.responsesEvent(s.data)
			}
		}
	}
	s.event, s.data, s.lines, s.owned, s.skip = nil, nil, 0, false, false
	if cap(s.dataBuf) > 64<<10 {
		s.dataBuf = nil // one large event must not pin its buffer for the rest of the stream
	}
}
