package otlptest

import (
	"encoding/hex"
	"net/http"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// Span is a flattened view of one received span. Its maps and slices are shared between the
// copies the Receiver hands out: do not modify them.
type Span struct {
	TraceID      string // 32 lowercase hex digits
	SpanID       string // 16 lowercase hex digits
	ParentSpanID string // "" for a root span
	TraceState   string
	Name         string
	// Kind is "unspecified", "internal", "server", "client", "producer" or "consumer", as
	// go.opentelemetry.io/otel/trace.SpanKind.String spells them.
	Kind  string
	Start time.Time
	End   time.Time
	// StatusCode is "Unset", "Ok" or "Error", as go.opentelemetry.io/otel/codes.Code.String
	// spells them.
	StatusCode    string
	StatusMessage string
	// Attributes, like Resource and Event.Attributes, hold string, int64, float64, bool,
	// []byte, []any or map[string]any values.
	Attributes map[string]any
	Events     []Event
	Resource   map[string]any
	Scope      string // instrumentation scope name
	// Endpoint is "http" or "grpc": how the export arrived.
	Endpoint string
	// Path is the HTTP request path; "" for gRPC.
	Path string
	// Headers are the export request's headers (gRPC metadata, canonicalised as HTTP
	// header names).
	Headers http.Header
}

// Event is a span event.
type Event struct {
	Name       string
	Time       time.Time
	Attributes map[string]any
}

// Service returns the span's service.name resource attribute.
func (s Span) Service() string {
	v, _ := s.Resource["service.name"].(string)
	return v
}

var kindNames = map[tracepb.Span_SpanKind]string{
	tracepb.Span_SPAN_KIND_UNSPECIFIED: "unspecified",
	tracepb.Span_SPAN_KIND_INTERNAL:    "internal",
	tracepb.Span_SPAN_KIND_SERVER:      "server",
	tracepb.Span_SPAN_KIND_CLIENT:      "client",
	tracepb.Span_SPAN_KIND_PRODUCER:    "producer",
	tracepb.Span_SPAN_KIND_CONSUMER:    "consumer",
}

var statusNames = map[tracepb.Status_StatusCode]string{
	tracepb.Status_STATUS_CODE_UNSET: "Unset",
	tracepb.Status_STATUS_CODE_OK:    "Ok",
	tracepb.Status_STATUS_CODE_ERROR: "Error",
}

// flatten turns an export request into Spans.
func flatten(req *coltracepb.ExportTraceServiceRequest, endpoint, path string, headers http.Header) []Span {
	var out []Span
	for _, rs := range req.GetResourceSpans() {
		res := attrMap(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			scope := ss.GetScope().GetName()
			for _, sp := range ss.GetSpans() {
				s := Span{
					TraceID:       hexID(sp.GetTraceId()),
					SpanID:        hexID(sp.GetSpanId()),
					ParentSpanID:  hexID(sp.GetParentSpanId()),
					TraceState:    sp.GetTraceState(),
					Name:          sp.GetName(),
					Kind:          kindNames[sp.GetKind()],
					Start:         unixNano(sp.GetStartTimeUnixNano()),
					End:           unixNano(sp.GetEndTimeUnixNano()),
					StatusCode:    statusNames[sp.GetStatus().GetCode()],
					StatusMessage: sp.GetStatus().GetMessage(),
					Attributes:    attrMap(sp.GetAttributes()),
					Resource:      res,
					Scope:         scope,
					Endpoint:      endpoint,
					Path:          path,
					Headers:       headers,
				}
				for _, ev := range sp.GetEvents() {
					s.Events = append(s.Events, Event{
						Name:       ev.GetName(),
						Time:       unixNano(ev.GetTimeUnixNano()),
						Attributes: attrMap(ev.GetAttributes()),
					})
				}
				out = append(out, s)
			}
		}
	}
	return out
}

// hexID renders an id; an absent or all-zero id is "".
func hexID(b []byte) string {
	for _, c := range b {
		if c != 0 {
			return hex.EncodeToString(b)
		}
	}
	return ""
}

func unixNano(ns uint64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(ns)).UTC()
}

func attrMap(kvs []*commonpb.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = anyValue(kv.GetValue())
	}
	return m
}

func anyValue(v *commonpb.AnyValue) any {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_DoubleValue:
		return x.DoubleValue
	case *commonpb.AnyValue_BytesValue:
		return x.BytesValue
	case *commonpb.AnyValue_ArrayValue:
		vals := x.ArrayValue.GetValues()
		out := make([]any, len(vals))
		for i, e := range vals {
			out[i] = anyValue(e)
		}
		return out
	case *commonpb.AnyValue_KvlistValue:
		return attrMap(x.KvlistValue.GetValues())
	}
	return nil
}
