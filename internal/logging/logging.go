// Package logging builds the slog handler every Sluice process logs through, and writes
// the per-request access log.
//
// Secrets are redacted at the logging layer, not at call sites: the handler from
// [NewHandler] (or any handler wrapped by [RedactHandler]) passes the message, every string
// value, every error's text, every member of a group and the rendered form of every other
// value through [Redact] before the underlying handler sees it, and replaces whole any
// string or structured value logged under a secret's name (slog.String("api_key", k)).
// Call sites never have to remember; they should still not log bodies or headers
// wholesale, since redaction recognises credentials by shape and by key name, not by
// meaning. A record with nothing to redact is handed on as is, without allocating.
package logging

import (
	"bytes"
	"context"
	"encoding"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"reflect"
)

// NewHandler returns the handler for a Sluice process: one JSON object (json true) or one
// logfmt-style text line per record, written to w, for records at level or above, with
// secrets redacted.
func NewHandler(w io.Writer, level slog.Leveler, json bool) slog.Handler {
	opts := &slog.HandlerOptions{Level: level}
	if json {
		return &redactHandler{h: slog.NewJSONHandler(w, opts), json: true}
	}
	return &redactHandler{h: slog.NewTextHandler(w, opts)}
}

// New returns a logger on [NewHandler].
func New(w io.Writer, level slog.Leveler, json bool) *slog.Logger {
	return slog.New(NewHandler(w, level, json))
}

// RedactHandler wraps h so that everything it receives is redacted first, for a process
// that needs another underlying handler (a test handler, a log bridge). Values without a
// string form of their own are rendered as *slog.TextHandler renders them when h is one,
// and as JSON otherwise.
func RedactHandler(h slog.Handler) slog.Handler {
	if r, ok := h.(*redactHandler); ok {
		return r
	}
	_, text := h.(*slog.TextHandler)
	return &redactHandler{h: h, json: !text}
}

// redactHandler redacts records on their way to h. It leaves a record untouched, and so
// allocates nothing, unless something in it needs rewriting.
type redactHandler struct {
	h    slog.Handler
	json bool // render values as slog.JSONHandler would, else as slog.TextHandler
}

// Enabled implements [slog.Handler.Enabled].
func (r *redactHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return r.h.Enabled(ctx, l)
}

// Handle implements [slog.Handler.Handle].
func (r *redactHandler) Handle(ctx context.Context, rec slog.Record) error {
	msg, changed := redact(rec.Message)
	if !changed {
		rec.Attrs(func(a slog.Attr) bool {
			changed = r.needsRewrite(a)
			return !changed
		})
	}
	if !changed {
		return r.h.Handle(ctx, rec)
	}
	out := slog.NewRecord(rec.Time, rec.Level, msg, rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(r.attr(a))
		return true
	})
	return r.h.Handle(ctx, out)
}

// WithAttrs implements [slog.Handler.WithAttrs].
func (r *redactHandler) WithAttrs(as []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = r.attr(a)
	}
	return &redactHandler{h: r.h.WithAttrs(red), json: r.json}
}

// WithGroup implements [slog.Handler.WithGroup].
func (r *redactHandler) WithGroup(name string) slog.Handler {
	return &redactHandler{h: r.h.WithGroup(name), json: r.json}
}

// needsRewrite reports whether attr would change a. It must agree with attr: an
// attribute it passes reaches the underlying handler as is.
func (r *redactHandler) needsRewrite(a slog.Attr) bool {
	v := a.Value
	switch v.Kind() {
	case slog.KindString:
		if v.String() != "" && isSecretName(a.Key) {
			return true
		}
		_, changed := redact(v.String())
		return changed
	case slog.KindGroup:
		for _, m := range v.Group() {
			if r.needsRewrite(m) {
				return true
			}
		}
		return false
	case slog.KindLogValuer:
		return true // resolved here, so that its LogValue runs once
	case slog.KindAny:
		x := v.Any()
		if x == nil {
			return false
		}
		if isSecretName(a.Key) {
			return true
		}
		if err, ok := x.(error); ok && r.json && !isJSONMarshaler(x) {
			// The common case: a plain error, which JSONHandler prints as Error().
			text, ok := errorText(err)
			if !ok {
				return true
			}
			_, changed := redact(text)
			return changed
		}
		// Anything else is rendered here, redacted, and handed on in rendered form, so
		// the handler does not render it a second time.
		return true
	}
	return false // numbers, bools, durations, times
}

// errorText returns err.Error(), or false if that panicked.
func errorText(err error) (s string, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return err.Error(), true
}

func isJSONMarshaler(x any) bool {
	_, ok := x.(json.Marshaler)
	return ok
}

// attr returns a redacted: a string or structured value under a secret's name (password,
// api_key, …; see [Redact]) is replaced as a whole, anything else is redacted within.
func (r *redactHandler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	if isSecretName(a.Key) {
		switch v.Kind() {
		case slog.KindString:
			if v.String() != "" {
				return slog.String(a.Key, Placeholder)
			}
		case slog.KindAny:
			if v.Any() != nil {
				return slog.String(a.Key, Placeholder)
			}
		}
	}
	return slog.Attr{Key: a.Key, Value: r.value(v)}
}

func (r *redactHandler) value(v slog.Value) slog.Value {
	switch v.Kind() {
	case slog.KindString:
		return slog.StringValue(Redact(v.String()))
	case slog.KindGroup:
		g := v.Group()
		out := make([]slog.Attr, len(g))
		for i, a := range g {
			out[i] = r.attr(a)
		}
		return slog.GroupValue(out...)
	case slog.KindAny:
		return r.anyValue(v.Any())
	}
	return v
}

// anyValue renders x as the underlying handler would, redacts that, and returns it in a
// form the handler prints the same way: a string, or raw JSON for a structured value.
func (r *redactHandler) anyValue(x any) (v slog.Value) {
	if x == nil {
		return slog.AnyValue(nil)
	}
	defer func() {
		// As slog's handlers do: a nil pointer whose method panics is <nil>, any other
		// panic in String, Error or MarshalJSON is logged rather than crashing.
		if p := recover(); p != nil {
			if isNilPointer(x) {
				v = slog.StringValue("<nil>")
				return
			}
			v = slog.StringValue(Redact(fmt.Sprintf("!PANIC: %v", p)))
		}
	}()
	if !r.json {
		return slog.StringValue(Redact(renderText(x)))
	}
	if !isJSONMarshaler(x) {
		if err, ok := x.(error); ok {
			return slog.StringValue(Redact(err.Error()))
		}
		if b, ok := byteSlice(x); ok {
			// JSON would show bytes as base64, where no credential can be recognised.
			return slog.StringValue(Redact(string(b)))
		}
	}
	// As JSONHandler encodes it: no HTML escaping.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(x); err != nil {
		// What the handler would print; a MarshalJSON error's text may hold anything.
		return slog.StringValue(Redact("!ERROR:" + err.Error()))
	}
	red, changed := redact(string(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))))
	if changed && !json.Valid([]byte(red)) {
		return slog.StringValue(red) // a redaction ran past the end of a JSON string
	}
	return slog.AnyValue(json.RawMessage(red))
}

// renderText renders x as slog.TextHandler renders a KindAny value.
func renderText(x any) string {
	if tm, ok := x.(encoding.TextMarshaler); ok {
		b, err := tm.MarshalText()
		if err != nil {
			return "!ERROR:" + err.Error()
		}
		return string(b)
	}
	if b, ok := byteSlice(x); ok {
		return string(b)
	}
	return fmt.Sprintf("%+v", x)
}

// byteSlice returns x as a []byte if its underlying type is []byte, as slog does.
func byteSlice(x any) ([]byte, bool) {
	if b, ok := x.([]byte); ok {
		return b, true
	}
	if t := reflect.TypeOf(x); t != nil && t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
		return reflect.ValueOf(x).Bytes(), true
	}
	return nil, false
}

func isNilPointer(x any) bool {
	v := reflect.ValueOf(x)
	return v.Kind() == reflect.Pointer && v.IsNil()
}
