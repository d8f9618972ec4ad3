package extproc

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	procv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/sluice-gateway/sluice/extproc/content"
	"github.com/sluice-gateway/sluice/extproc/guardrail"
	"github.com/sluice-gateway/sluice/internal/apierror"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// keyGuards are the guardrails a key runs, split by direction, in attachment order
// (organization, team, project, key).
type keyGuards struct {
	request, response, stream []*guardrail.Guardrail
	// err, when set, names an attached guardrail that is missing or does not compile: the
	// key's requests are refused rather than served without it.
	err error
}

// inspectsResponses reports whether the key needs Envoy's response phases at all.
func (g *keyGuards) inspectsResponses() bool {
	return g != nil && g.err == nil && (len(g.response) > 0 || len(g.stream) > 0)
}

// compileGuardrails compiles every guardrail of a snapshot once; keys share them.
func compileGuardrails(r *config.Resources, opts guardrail.Options) (map[string]*guardrail.Guardrail, map[string]error) {
	out := make(map[string]*guardrail.Guardrail, len(r.Guardrails))
	bad := map[string]error{}
	for id, g := range r.Guardrails {
		c, err := guardrail.New(g, opts)
		if err != nil {
			bad[id] = fmt.Errorf("guardrail %s: %w", id, err)
			continue
		}
		out[id] = c
	}
	return out, bad
}

// attachGuards resolves the guardrails attached to the key and to its organization, team
// and project (already filled in by setTenant).
func (e *keyEntry) attachGuards(snap *config.Snapshot, r *config.Resources, k *config.VirtualKey, all map[string]*guardrail.Guardrail, bad map[string]error) {
	// A scope document the control plane sent but this replica could not decode may attach
	// guardrails: serving its keys without them would be the silent failure guardrails
	// exist to prevent.
	var lost error
	for _, sc := range []struct {
		kind config.Kind
		id   string
		ok   bool
	}{
		{config.KindOrganization, e.org, r.Organizations[e.org] != nil},
		{config.KindTeam, e.team, r.Teams[e.team] != nil},
		{config.KindProject, e.project, r.Projects[e.project] != nil},
		{config.KindTeam, scopeID(k.Scope, config.ScopeTeam), r.Teams[scopeID(k.Scope, config.ScopeTeam)] != nil},
		{config.KindProject, scopeID(k.Scope, config.ScopeProject), r.Projects[scopeID(k.Scope, config.ScopeProject)] != nil},
	} {
		if _, sent := snap.Resources[sc.kind][sc.id]; sc.id != "" && sent && !sc.ok {
			lost = errors.Join(lost, fmt.Errorf("%s %s did not decode, so its guardrails are unknown", sc.kind, sc.id))
		}
	}
	var ids []string
	add := func(list []string) {
		for _, id := range list {
			if !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	if o := r.Organizations[e.org]; o != nil {
		add(o.Guardrails)
	}
	if t := r.Teams[e.team]; t != nil {
		add(t.Guardrails)
	}
	if p := r.Projects[e.project]; p != nil {
		add(p.Guardrails)
	}
	add(k.Config.Guardrails)
	if len(ids) == 0 && lost == nil {
		return
	}
	g := &keyGuards{err: lost}
	for _, id := range ids {
		c := all[id]
		if c == nil {
			err := bad[id]
			if err == nil {
				err = fmt.Errorf("guardrail %s does not exist", id)
			}
			g.err = errors.Join(g.err, err)
			continue
		}
		if c.Has(config.DirectionRequest) {
			g.request = append(g.request, c)
		}
		if c.Has(config.DirectionResponse) {
			g.response = append(g.response, c)
		}
		if c.Has(config.DirectionStream) {
			g.stream = append(g.stream, c)
		}
	}
	e.guards = g
}

func scopeID(s config.Scope, kind config.ScopeKind) string {
	if s.Kind == kind {
		return s.ID
	}
	return ""
}

// errGuardrailConfig refuses a key whose guardrails cannot run: serving it unguarded would
// be the silent failure guardrails exist to prevent.
var errGuardrailConfig = apierror.New(http.StatusServiceUnavailable, "guardrail_unavailable",
	"A guardrail attached to this key is not available; the request was not sent.")

func blocked(reason string) *apierror.Error {
	if reason == "" {
		reason = "a guardrail blocked this content"
	}
	return apierror.New(http.StatusForbidden, "guardrail_blocked", reason)
}

// shapeOf maps an endpoint to the body shape package content reads.
func shapeOf(e wire.Endpoint) content.Shape {
	switch e {
	case wire.ChatCompletions:
		return content.OpenAIChat
	case wire.Messages, wire.CountTokens:
		return content.AnthropicMessages
	case wire.Responses, wire.ResponsesCompact:
		return content.OpenAIResponses
	}
	return 0
}

func (r *request) meta() guardrail.Meta {
	k := r.key
	return guardrail.Meta{RequestID: r.id, KeyID: k.id, OrgID: k.org, TeamID: k.team,
		ProjectID: k.project, PrincipalID: k.principal}
}

// guardRequest runs the key's request guardrails over the body. It returns the body to
// send on (nil: unchanged) or the error to answer with.
func (r *request) guardRequest(body []byte) ([]byte, *apierror.Error) {
	g := r.key.guards
	if g == nil || len(g.request) == 0 {
		return nil, nil
	}
	// Every string a provider might read, not only where the format says text lives: a
	// case-insensitive decoder downstream would read "Content" as content.
	fields := content.RequestText(body)
	if len(fields) == 0 {
		return nil, nil
	}
	return r.apply(g.request, config.DirectionRequest, body, fields)
}

// apply checks fields against gs and returns the rewritten body for a modify verdict.
func (r *request) apply(gs []*guardrail.Guardrail, d config.GuardrailDirection, body []byte, fields []content.Field) ([]byte, *apierror.Error) {
	texts := make([]string, len(fields))
	for i, f := range fields {
		texts[i] = f.Text
	}
	v := guardrail.Check(r.ctx, gs, d, r.meta(), texts)
	r.srv.cfg.Metrics.GuardrailVerdict(v.Guardrail, string(d), v.Action.String())
	switch v.Action {
	case guardrail.Block:
		r.blockedBy = v.Guardrail
		return nil, blocked(v.Reason)
	case guardrail.Modify:
		// Only changed fields go back: an unchanged one may be unaddressable (a repeated
		// JSON key), and rewriting it would fail for nothing.
		changed := fields[:0]
		for i, f := range fields {
			if v.Texts[i] != f.Text {
				f.Text = v.Texts[i]
				changed = append(changed, f)
			}
		}
		if len(changed) == 0 {
			return nil, nil
		}
		out, err := content.Replace(body, changed)
		if err != nil {
			// Text a guardrail redacted sits where it cannot be rewritten (a repeated JSON
			// key): refuse rather than pass it on.
			return nil, blocked("content a guardrail redacted could not be rewritten")
		}
		return out, nil
	}
	return nil, nil
}

// Mode overrides. responseMode turns on the response-headers phase for a key with
// response or stream guardrails (every other key keeps it skipped); once the answer's
// headers show what it is, its body is inspected buffered (JSON) or streamed (SSE).
var (
	responseMode = processingMode(procv3.ProcessingMode_NONE)
	bufferedMode = processingMode(procv3.ProcessingMode_BUFFERED)
	streamedMode = processingMode(procv3.ProcessingMode_STREAMED)
)

func processingMode(responseBody procv3.ProcessingMode_BodySendMode) *procv3.ProcessingMode {
	return &procv3.ProcessingMode{
		RequestHeaderMode: procv3.ProcessingMode_SEND, RequestBodyMode: procv3.ProcessingMode_BUFFERED,
		RequestTrailerMode: procv3.ProcessingMode_SKIP, ResponseHeaderMode: procv3.ProcessingMode_SEND,
		ResponseBodyMode: responseBody, ResponseTrailerMode: procv3.ProcessingMode_SKIP,
	}
}

// onResponseHeaders decides whether the response body is inspected: buffered for a JSON
// answer with response guardrails, streamed for an SSE answer with stream guardrails.
// Error responses pass as they are.
func (r *request) onResponseHeaders(h *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	resp := &extprocv3.HeadersResponse{}
	out := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: resp}}
	if r.key == nil || !r.key.guards.inspectsResponses() || h.EndOfStream {
		return out
	}
	var status, ctype string
	for _, hv := range h.GetHeaders().GetHeaders() {
		switch hv.Key {
		case ":status":
			status = headerValue(hv)
		case "content-type":
			ctype = headerValue(hv)
		}
	}
	if status != "200" {
		return out
	}
	g := r.key.guards
	switch {
	case isEventStream(ctype) && len(g.stream) > 0:
		r.rewriter = content.NewRewriter(shapeOf(r.route.Endpoint), func() content.Filter {
			st := guardrail.NewStream(r.ctx, g.stream, r.meta())
			r.streams = append(r.streams, st)
			return st
		})
		out.ModeOverride = streamedMode
		// The body's length changes with redactions; the stream is chunked anyway.
		resp.Response = &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{RemoveHeaders: []string{"content-length"}}}
	case !isEventStream(ctype) && len(g.response) > 0:
		r.bufferResponse = true
		out.ModeOverride = bufferedMode
	}
	return out
}

// onResponseBody inspects a buffered answer or the next chunk of a stream.
func (r *request) onResponseBody(b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	switch {
	case r.rewriter != nil:
		return r.streamChunk(b)
	case r.bufferResponse:
		fields := content.ResponseFields(shapeOf(r.route.Endpoint), b.Body)
		if len(fields) == 0 {
			break
		}
		body, e := r.apply(r.key.guards.response, config.DirectionResponse, b.Body, fields)
		if e != nil {
			return r.reject(e)
		}
		if body != nil {
			return bodyResponse(body, true)
		}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}
}

// streamChunk passes one chunk of a stream through the rewriter. A block ends the stream
// with an error event in the client's format; what upstream sends after it is dropped.
func (r *request) streamChunk(b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	if r.streamBlocked {
		return bodyResponse(nil, false)
	}
	out, stop := r.rewriter.Write(b.Body, b.EndOfStream)
	if stop {
		r.streamBlocked = true
		var reason string
		for _, st := range r.streams {
			if r.blockedBy, reason = st.Reason(); reason != "" {
				break
			}
		}
		r.srv.cfg.Metrics.GuardrailVerdict(r.blockedBy, string(config.DirectionStream), guardrail.Block.String())
		e := blocked(reason)
		r.traceRejection(e)
		r.logRejection(e)
		out = append(out, e.StreamEvent(r.route.Format, r.route.Endpoint, r.id)...)
	}
	return bodyResponse(out, false)
}

// bodyResponse replaces the body (or the current chunk) with body; a whole buffered body
// also gets its new length.
func bodyResponse(body []byte, whole bool) *extprocv3.ProcessingResponse {
	common := &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: body}}}
	if len(body) == 0 {
		common.BodyMutation.Mutation = &extprocv3.BodyMutation_ClearBody{ClearBody: true}
	}
	if whole {
		common.HeaderMutation = &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
			setHeader("content-length", strconv.Itoa(len(body)))}}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{Response: common}}}
}

// isEventStream reports whether a content-type is SSE; media types are case-insensitive.
func isEventStream(ctype string) bool {
	const sse = "text/event-stream"
	return len(ctype) >= len(sse) && strings.EqualFold(ctype[:len(sse)], sse)
}
