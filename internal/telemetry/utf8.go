package telemetry

import (
	"strings"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// OTLP carries strings as protobuf strings, which must be valid UTF-8: one invalid byte
// in one attribute fails the whole export call, every span of the batch with it. Span
// names and attributes can hold what a client sent (a model name, captured content), so
// spans are made valid before export, whatever the call site did.

// validSpan is a span whose name, attributes and status text are valid UTF-8.
type validSpan struct {
	sdktrace.ReadOnlySpan
	name, status string
	attrs        []attribute.KeyValue
}

func (v validSpan) Name() string                     { return v.name }
func (v validSpan) Attributes() []attribute.KeyValue { return v.attrs }
func (v validSpan) Status() sdktrace.Status {
	s := v.ReadOnlySpan.Status()
	s.Description = v.status
	return s
}

// validUTF8 replaces, in place, each span of batch that carries invalid UTF-8 in its name,
// attributes or status description. Valid spans (nearly all) cost one scan and no copy.
func validUTF8(batch []sdktrace.ReadOnlySpan) {
	for i, s := range batch {
		attrs := s.Attributes()
		if utf8.ValidString(s.Name()) && utf8.ValidString(s.Status().Description) && validAttrs(attrs) {
			continue
		}
		clean := make([]attribute.KeyValue, len(attrs))
		for j, kv := range attrs {
			clean[j] = kv
			if kv.Value.Type() == attribute.STRING && !utf8.ValidString(kv.Value.AsString()) {
				clean[j] = kv.Key.String(strings.ToValidUTF8(kv.Value.AsString(), "\uFFFD"))
			}
		}
		batch[i] = validSpan{ReadOnlySpan: s, attrs: clean,
			name:   strings.ToValidUTF8(s.Name(), "\uFFFD"),
			status: strings.ToValidUTF8(s.Status().Description, "\uFFFD")}
	}
}

func validAttrs(attrs []attribute.KeyValue) bool {
	for _, kv := range attrs {
		if kv.Value.Type() == attribute.STRING && !utf8.ValidString(kv.Value.AsString()) {
			return false
		}
	}
	return true
}
