package telemetry

import (
	"crypto/rand"
	"encoding/hex"

	"go.opentelemetry.io/otel/trace"
)

// TraceContext is W3C trace context: the ids a traceparent header carries.
type TraceContext struct {
	TraceID trace.TraceID
	SpanID  trace.SpanID
	Sampled bool
}

// traceparentLen is the length of a version-00 traceparent: "vv-" + 32 + "-" + 16 + "-" + "ff".
const traceparentLen = 55

// ParseTraceparent parses a W3C traceparent header value
// (https://www.w3.org/TR/trace-context/#traceparent-header).
//
// It is strict: lowercase hex only, non-zero trace and parent ids, version ff refused,
// version 00 exactly 55 characters. A higher version is accepted as the specification
// asks: its first 55 characters are read as version 00 and anything after them must
// start with '-'. Only the sampled bit of the flags is kept. ok is false for anything
// else; the caller then starts a new trace.
func ParseTraceparent(h string) (tc TraceContext, ok bool) {
	if len(h) < traceparentLen || h[2] != '-' || h[35] != '-' || h[52] != '-' {
		return TraceContext{}, false
	}
	var version [1]byte
	if !decodeLowerHex(version[:], h[0:2]) || version[0] == 0xff {
		return TraceContext{}, false
	}
	switch {
	case version[0] == 0 && len(h) != traceparentLen:
		return TraceContext{}, false
	case version[0] != 0 && len(h) > traceparentLen && h[traceparentLen] != '-':
		return TraceContext{}, false
	}
	var flags [1]byte
	if !decodeLowerHex(tc.TraceID[:], h[3:35]) ||
		!decodeLowerHex(tc.SpanID[:], h[36:52]) ||
		!decodeLowerHex(flags[:], h[53:55]) {
		return TraceContext{}, false
	}
	if !tc.TraceID.IsValid() || !tc.SpanID.IsValid() {
		return TraceContext{}, false
	}
	tc.Sampled = flags[0]&byte(trace.FlagsSampled) != 0
	return tc, true
}

// decodeLowerHex decodes src (exactly 2*len(dst) characters) into dst, refusing uppercase
// digits, which encoding/hex would accept but W3C trace context forbids.
func decodeLowerHex(dst []byte, src string) bool {
	for i := range dst {
		hi, ok1 := lowerHexVal(src[2*i])
		lo, ok2 := lowerHexVal(src[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func lowerHexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// Traceparent formats tc as a version-00 traceparent: "00-<trace id>-<span id>-01" when
// sampled, "-00" otherwise.
func (tc TraceContext) Traceparent() string {
	var b [traceparentLen]byte
	b[0], b[1], b[2] = '0', '0', '-'
	hex.Encode(b[3:35], tc.TraceID[:])
	b[35] = '-'
	hex.Encode(b[36:52], tc.SpanID[:])
	b[52], b[53], b[54] = '-', '0', '0'
	if tc.Sampled {
		b[54] = '1'
	}
	return string(b[:])
}

// NewTraceID returns a random, non-zero trace id from crypto/rand.
func NewTraceID() trace.TraceID {
	var id trace.TraceID
	for !id.IsValid() {
		_, _ = rand.Read(id[:]) // never fails since Go 1.24; it crashes the program instead
	}
	return id
}

// NewSpanID returns a random, non-zero span id from crypto/rand.
func NewSpanID() trace.SpanID {
	var id trace.SpanID
	for !id.IsValid() {
		_, _ = rand.Read(id[:])
	}
	return id
}
