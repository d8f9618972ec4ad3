package xds

import (
	"fmt"

	accesslog "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	celfilter "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/filters/cel/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// anthropicPathPrefix selects the Anthropic error envelope; every other path
// gets the OpenAI one (ARCHITECTURE.md, "Errors to clients").
const anthropicPathPrefix = "/v1/messages"

// replyClass is one family of Envoy-generated local replies and how it is
// presented to clients in both dialects.
type replyClass struct {
	name string
	// match selects the class by status: exact codes, or a [min,max] range
	// when ranged is set.
	codes    []uint32
	ranged   bool
	min, max uint32
	// message replaces Envoy's own local-reply text (which names internal
	// details such as "delayed connect error: 111"). Empty keeps Envoy's
	// text.
	message       string
	openAIType    string
	openAICode    string
	anthropicType string
}

func replyClasses(p Params) []replyClass {
	return []replyClass{
		{
			name:          "too_large",
			codes:         []uint32{413},
			message:       fmt.Sprintf("Request body is larger than the gateway limit of %d bytes.", p.MaxRequestBytes),
			openAIType:    "invalid_request_error",
			openAICode:    "request_too_large",
			anthropicType: "request_too_large",
		},
		{
			name:          "not_found",
			codes:         []uint32{404},
			message:       "Unknown endpoint.",
			openAIType:    "not_found_error",
			openAICode:    "not_found",
			anthropicType: "not_found_error",
		},
		{
			name:          "upstream_unavailable",
			codes:         []uint32{502, 503},
			message:       "The upstream service is unavailable.",
			openAIType:    "server_error",
			openAICode:    "upstream_unavailable",
			anthropicType: "api_error",
		},
		{
			name:          "upstream_timeout",
			codes:         []uint32{504},
			message:       "The upstream service timed out.",
			openAIType:    "server_error",
			openAICode:    "upstream_unavailable",
			anthropicType: "api_error",
		},
		{
			// ext_proc failures (fail closed) surface as 500.
			name:          "gateway_error",
			codes:         []uint32{500},
			message:       "The gateway could not process the request.",
			openAIType:    "server_error",
			openAICode:    "gateway_error",
			anthropicType: "api_error",
		},
		{
			name:   "server_error",
			ranged: true, min: 500, max: 599,
			openAIType:    "server_error",
			openAICode:    "server_error",
			anthropicType: "api_error",
		},
		{
			// Catch-all: codec errors (400), header overflow (431),
			// request timeouts (408) and anything Envoy adds later.
			name:   "invalid_request",
			ranged: true, min: 0, max: 999,
			openAIType:    "invalid_request_error",
			openAICode:    "invalid_request",
			anthropicType: "invalid_request_error",
		},
	}
}

// localReplyConfig makes every Envoy-generated reply (413 buffer overflow,
// 5xx upstream failure, ext_proc failure, ...) a JSON error in the client's
// dialect carrying x-sluice-request-id.
//
// Envoy routes ext_proc ImmediateResponses and route direct_responses
// through the same local-reply path (sendLocalReply), so a blanket mapper
// would wrap extproc's already-formatted JSON errors a second time. The first
// mapper therefore passes through any local reply that already carries a JSON
// content-type, which only those two sources set. It needs the CEL access-log
// filter extension (envoy.access_loggers.extension_filters.cel), present in
// the official Envoy 1.40 build: the built-in header_filter only sees request
// headers.
func localReplyConfig(p Params) *hcm.LocalReplyConfig {
	mappers := []*hcm.ResponseMapper{{
		Filter:       celFilter(`"content-type" in response.headers && response.headers["content-type"].startsWith("application/json")`),
		HeadersToAdd: []*core.HeaderValueOption{requestIDHeader(core.HeaderValueOption_ADD_IF_ABSENT)},
		BodyFormatOverride: &core.SubstitutionFormatString{
			Format: &core.SubstitutionFormatString_TextFormatSource{TextFormatSource: &core.DataSource{
				Specifier: &core.DataSource_InlineString{InlineString: "%LOCAL_REPLY_BODY%"},
			}},
			ContentType: "application/json",
		},
	}}
	mappers = append(mappers, webSocketMapper())
	for _, c := range replyClasses(p) {
		for _, anthropic := range []bool{true, false} {
			mappers = append(mappers, c.mapper(anthropic))
		}
	}
	return &hcm.LocalReplyConfig{Mappers: mappers}
}

// webSocketMapper turns Envoy's 403 for a WebSocket upgrade of /v1/responses (Codex tries
// the Responses WebSocket mode first) into 426: Codex then falls back to plain HTTP at
// once, where a 403 or 404 costs it retries or the session.
func webSocketMapper() *hcm.ResponseMapper {
	header := func(name string, prefix string) *accesslog.AccessLogFilter {
		m := &route.HeaderMatcher{Name: name, HeaderMatchSpecifier: &route.HeaderMatcher_PresentMatch{PresentMatch: true}}
		if prefix != "" {
			m.HeaderMatchSpecifier = &route.HeaderMatcher_StringMatch{StringMatch: &matcher.StringMatcher{
				MatchPattern: &matcher.StringMatcher_Prefix{Prefix: prefix}}}
		}
		return &accesslog.AccessLogFilter{FilterSpecifier: &accesslog.AccessLogFilter_HeaderFilter{
			HeaderFilter: &accesslog.HeaderFilter{Header: m}}}
	}
	return &hcm.ResponseMapper{
		Filter:     andFilter(statusFilter(accesslog.ComparisonFilter_EQ, 403), header(":path", "/v1/responses"), header("upgrade", "")),
		StatusCode: wrapperspb.UInt32(426),
		Body: &core.DataSource{Specifier: &core.DataSource_InlineString{
			InlineString: "This gateway serves the Responses API over HTTP only; POST /v1/responses."}},
		BodyFormatOverride: &core.SubstitutionFormatString{
			Format: &core.SubstitutionFormatString_JsonFormat{JsonFormat: obj(map[string]*structpb.Value{
				"error": structpb.NewStructValue(obj(map[string]*structpb.Value{
					"message": structpb.NewStringValue("%LOCAL_REPLY_BODY%"),
					"type":    structpb.NewStringValue("invalid_request_error"),
					"code":    structpb.NewStringValue("websocket_not_supported"),
					"param":   structpb.NewNullValue(),
				})),
			})},
			ContentType: "application/json",
		},
		HeadersToAdd: []*core.HeaderValueOption{requestIDHeader(core.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)},
	}
}

func (c replyClass) mapper(anthropic bool) *hcm.ResponseMapper {
	var status *accesslog.AccessLogFilter
	switch {
	case c.ranged:
		status = andFilter(statusFilter(accesslog.ComparisonFilter_GE, c.min), statusFilter(accesslog.ComparisonFilter_LE, c.max))
	case len(c.codes) == 1:
		status = statusFilter(accesslog.ComparisonFilter_EQ, c.codes[0])
	default:
		var fs []*accesslog.AccessLogFilter
		for _, code := range c.codes {
			fs = append(fs, statusFilter(accesslog.ComparisonFilter_EQ, code))
		}
		status = &accesslog.AccessLogFilter{FilterSpecifier: &accesslog.AccessLogFilter_OrFilter{
			OrFilter: &accesslog.OrFilter{Filters: fs},
		}}
	}
	pathFilter := &accesslog.AccessLogFilter{FilterSpecifier: &accesslog.AccessLogFilter_HeaderFilter{
		HeaderFilter: &accesslog.HeaderFilter{Header: &route.HeaderMatcher{
			Name: ":path",
			HeaderMatchSpecifier: &route.HeaderMatcher_StringMatch{StringMatch: &matcher.StringMatcher{
				MatchPattern: &matcher.StringMatcher_Prefix{Prefix: anthropicPathPrefix},
			}},
			InvertMatch: !anthropic,
		}},
	}}

	var body *structpb.Struct
	if anthropic {
		body = obj(map[string]*structpb.Value{
			"type": structpb.NewStringValue("error"),
			"error": structpb.NewStructValue(obj(map[string]*structpb.Value{
				"type":    structpb.NewStringValue(c.anthropicType),
				"message": structpb.NewStringValue("%LOCAL_REPLY_BODY%"),
			})),
		})
	} else {
		body = obj(map[string]*structpb.Value{
			"error": structpb.NewStructValue(obj(map[string]*structpb.Value{
				"message": structpb.NewStringValue("%LOCAL_REPLY_BODY%"),
				"type":    structpb.NewStringValue(c.openAIType),
				"code":    structpb.NewStringValue(c.openAICode),
				"param":   structpb.NewNullValue(),
			})),
		})
	}
	m := &hcm.ResponseMapper{
		Filter: andFilter(status, pathFilter),
		// json_format, not text_format: Envoy JSON-escapes the substituted
		// %LOCAL_REPLY_BODY%, which may contain quotes.
		BodyFormatOverride: &core.SubstitutionFormatString{
			Format:      &core.SubstitutionFormatString_JsonFormat{JsonFormat: body},
			ContentType: "application/json",
		},
		HeadersToAdd: []*core.HeaderValueOption{requestIDHeader(core.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)},
	}
	if c.message != "" {
		m.Body = &core.DataSource{Specifier: &core.DataSource_InlineString{InlineString: c.message}}
	}
	return m
}

// requestIDHeader echoes the request's x-sluice-request-id: extproc's id once
// its header phase ran, else the one Envoy minted (requestIDMutation). An
// empty value is dropped rather than sent (KeepEmptyValue false; verified:
// Envoy 1.40 omits the header, it does not send "-").
func requestIDHeader(action core.HeaderValueOption_HeaderAppendAction) *core.HeaderValueOption {
	return &core.HeaderValueOption{
		Header:       &core.HeaderValue{Key: RequestIDHeader, Value: "%REQ(" + RequestIDHeader + ")%"},
		AppendAction: action,
	}
}

func obj(fields map[string]*structpb.Value) *structpb.Struct {
	return &structpb.Struct{Fields: fields}
}

func statusFilter(op accesslog.ComparisonFilter_Op, code uint32) *accesslog.AccessLogFilter {
	return &accesslog.AccessLogFilter{FilterSpecifier: &accesslog.AccessLogFilter_StatusCodeFilter{
		StatusCodeFilter: &accesslog.StatusCodeFilter{Comparison: &accesslog.ComparisonFilter{
			Op: op,
			Value: &core.RuntimeUInt32{
				DefaultValue: code,
				RuntimeKey:   fmt.Sprintf("sluice.local_reply.status_%d", code),
			},
		}},
	}}
}

func andFilter(fs ...*accesslog.AccessLogFilter) *accesslog.AccessLogFilter {
	return &accesslog.AccessLogFilter{FilterSpecifier: &accesslog.AccessLogFilter_AndFilter{
		AndFilter: &accesslog.AndFilter{Filters: fs},
	}}
}

func celFilter(expr string) *accesslog.AccessLogFilter {
	return &accesslog.AccessLogFilter{FilterSpecifier: &accesslog.AccessLogFilter_ExtensionFilter{
		ExtensionFilter: &accesslog.ExtensionFilter{
			Name:       "envoy.access_loggers.extension_filters.cel",
			ConfigType: &accesslog.ExtensionFilter_TypedConfig{TypedConfig: mustAny(&celfilter.ExpressionFilter{Expression: expr})},
		},
	}}
}
