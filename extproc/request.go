package extproc

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/tidwall/gjson"

	"github.com/sluice-gateway/sluice/extproc/content"
	"github.com/sluice-gateway/sluice/extproc/guardrail"
	"github.com/sluice-gateway/sluice/internal/apierror"
	"github.com/sluice-gateway/sluice/internal/ctxtoken"
	"github.com/sluice-gateway/sluice/internal/reqid"
	"github.com/sluice-gateway/sluice/internal/vkey"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// request is the state of one HTTP request across its ext_proc messages. It lives on the
// stream's goroutine and needs no locks.
type request struct {
	srv   *Server
	ctx   context.Context
	st    *compiled
	id    string
	route wire.Route
	key   *keyEntry
	// strip lists the request headers to remove before the request leaves Envoy: the client
	// credential and every client-sent x-sluice-* header.
	strip []string

	trace reqTrace
	// envoyTraceparent is Envoy's span for the request, from the ext_proc call's metadata.
	envoyTraceparent string
	// dispatched: the request went on to the dispatcher, which records its gateway span.
	dispatched bool
	blockedBy  string // the guardrail that blocked the request, if one did

	// Governance.
	cacheHeader  string // the client's X-Sluice-Cache, when it sent one
	hasCache     bool
	extraHeaders [][2]string // more headers on a response extproc answers itself

	// Response inspection, for keys with response or stream guardrails only.
	bufferResponse bool              // the JSON answer is buffered for response guardrails
	rewriter       *content.Rewriter // the SSE answer is re-framed through stream guardrails
	streams        []*guardrail.Stream
	streamBlocked  bool
}

var (
	errNoBody      = apierror.New(http.StatusBadRequest, "invalid_request_error", "Request body is required.")
	errNoWebSocket = apierror.New(http.StatusUpgradeRequired, "websocket_not_supported",
		"This gateway serves the Responses API over HTTP only; POST /v1/responses.")
)

func (r *request) onHeaders(h *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	r.id = reqid.New()
	var path, method, authz, apiKey, traceparent string
	var anthropicVersion bool
	contentLength := int64(-1)
	for _, hv := range h.GetHeaders().GetHeaders() {
		k := hv.Key
		switch {
		case k == ":path":
			path = headerValue(hv)
		case k == ":method":
			method = headerValue(hv)
		case k == "authorization":
			authz = headerValue(hv)
			r.strip = append(r.strip, k)
		case k == "x-api-key":
			apiKey = headerValue(hv)
			r.strip = append(r.strip, k)
		case k == "anthropic-version":
			anthropicVersion = true
		case k == "traceparent":
			traceparent = headerValue(hv)
		case k == "content-length":
			if n, err := strconv.ParseInt(headerValue(hv), 10, 64); err == nil {
				contentLength = n
			}
		case k == wire.HeaderCache:
			r.cacheHeader, r.hasCache = headerValue(hv), true
			r.strip = append(r.strip, k)
		case k == wire.HeaderRequestID:
			// Overwritten below, never removed: Envoy's order of removes and sets within one
			// mutation is not something to depend on.
		case strings.HasPrefix(k, wire.HeaderPrefix):
			r.strip = append(r.strip, k)
		}
	}
	r.trace.begin(r.srv.cfg.Now(), traceparent, r.envoyTraceparent)
	// Until the route is known, errors speak the dialect the path suggests.
	r.route.Format = wire.OpenAI
	if strings.HasPrefix(path, "/v1/messages") {
		r.route.Format = wire.Anthropic
	}
	route, ok := wire.Lookup(path, anthropicVersion)
	if !ok {
		return r.reject(apierror.ErrNotFound)
	}
	r.route = route
	if route.Endpoint == wire.Responses && method == http.MethodGet {
		// Codex first tries the Responses WebSocket mode; 426 sends it to plain HTTP at once.
		return r.reject(errNoWebSocket)
	}
	if method != route.Method {
		return r.reject(apierror.New(http.StatusMethodNotAllowed, "method_not_allowed",
			"Method "+method+" is not allowed on this endpoint."))
	}

	secret := apiKey
	if secret == "" {
		secret = bearer(authz)
	}
	// A malformed secret is refused before hashing: cheap, and no HMAC work for garbage.
	if !vkey.WellFormed(secret) {
		return r.reject(apierror.ErrInvalidAPIKey)
	}
	key, err := r.srv.authenticate(r.ctx, r.st, secret)
	if err != nil {
		return r.reject(err)
	}
	r.key = key

	if route.Endpoint == wire.Model {
		id := wire.ModelID(path)
		if u, err := url.PathUnescape(id); err == nil {
			id = u // "meta-llama%2FLlama-3" names meta-llama/Llama-3
		}
		return r.model(id)
	}
	if !route.HasBody {
		body := key.modelsOpenAI
		if route.Format == wire.Anthropic {
			body = key.modelsAnthropic
		}
		return r.immediate(http.StatusOK, body, "")
	}
	if contentLength > r.srv.cfg.MaxRequestBytes {
		return r.reject(tooLarge(r.srv.cfg.MaxRequestBytes))
	}
	if h.EndOfStream {
		return r.reject(errNoBody)
	}
	// Strip and stamp now, so even a reply Envoy generates itself while buffering the body
	// (413) names the request; the context token follows in the body response, once the model
	// and so the chain are known.
	out := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
		RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{
			HeaderMutation: &extprocv3.HeaderMutation{
				RemoveHeaders: r.strip,
				SetHeaders:    []*corev3.HeaderValueOption{setHeader(wire.HeaderRequestID, r.id)},
			},
		}}}}
	if key.guards.inspectsResponses() {
		out.ModeOverride = responseMode
	}
	return out
}

func tooLarge(limit int64) *apierror.Error {
	return apierror.New(http.StatusRequestEntityTooLarge, "request_too_large",
		"Request body exceeds the limit of "+strconv.FormatInt(limit, 10)+" bytes.")
}

func (r *request) onBody(b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	if r.key == nil { // headers were rejected; Envoy should not send a body, but never pass one
		return r.reject(apierror.ErrInvalidAPIKey)
	}
	body := b.Body
	if int64(len(body)) > r.srv.cfg.MaxRequestBytes {
		return r.reject(tooLarge(r.srv.cfg.MaxRequestBytes))
	}
	if len(body) == 0 {
		return r.reject(errNoBody)
	}
	// Validate and scan; never decode the whole body into Go values.
	if !gjson.ValidBytes(body) {
		return r.reject(apierror.New(http.StatusBadRequest, "invalid_json", "Request body is not valid JSON."))
	}
	// GetBytes, not ParseBytes: the latter copies the whole body into a string first.
	if bytes.TrimLeft(body, " \t\r\n")[0] != '{' {
		return r.reject(apierror.New(http.StatusBadRequest, "invalid_json", "Request body must be a JSON object."))
	}
	m := gjson.GetBytes(body, "model")
	if m.Type != gjson.String || m.Str == "" {
		e := apierror.New(http.StatusBadRequest, "missing_model", "The request must name a model.")
		e.Param = "model"
		return r.reject(e)
	}
	model := m.Str
	stream := gjson.GetBytes(body, "stream")
	if stream.Exists() && stream.Type != gjson.True && stream.Type != gjson.False {
		e := apierror.New(http.StatusBadRequest, "invalid_request_error", "stream must be a boolean.")
		e.Param = "stream"
		return r.reject(e)
	}
	chain := r.key.route(model, r.route.Endpoint)
	if len(chain) == 0 {
		if _, alias := r.key.aliases[model]; !alias && !r.key.allows(model) {
			e := apierror.New(http.StatusForbidden, "model_not_allowed", "This key may not use model "+strconv.Quote(model)+".")
			e.Param = "model"
			return r.reject(e)
		}
		e := apierror.New(http.StatusNotFound, "model_not_found", "No provider available to this key serves model "+strconv.Quote(model)+".")
		e.Param = "model"
		return r.reject(e)
	}
	if r.key.policyErr != nil {
		r.srv.cfg.Logger.Error("extproc: policy config", "request_id", r.id, "key_id", r.key.id, "err", r.key.policyErr)
		return r.reject(errPolicyConfig)
	}
	if e := r.checkPolicy(body); e != nil {
		return r.reject(e)
	}
	cacheMode, cerr := r.cacheMode(r.cacheHeader, r.hasCache)
	if cerr != nil {
		return r.reject(cerr)
	}
	claims := &ctxtoken.Claims{
		RequestID: r.id, KeyID: r.key.id, OrgID: r.key.org, TeamID: r.key.team,
		ProjectID: r.key.project, PrincipalID: r.key.principal,
		Model: model, Format: r.route.Format.String(), Endpoint: r.route.Endpoint.String(),
		Stream: stream.Type == gjson.True, Chain: chain, Trace: r.trace.claims(),
		Inspected: r.key.guards.inspectsResponses(), CacheMode: string(cacheMode), Fallback: r.key.fallback,
	}
	if r.key.guards != nil && r.key.guards.err != nil {
		r.srv.cfg.Logger.Error("extproc: guardrail config", "request_id", r.id, "key_id", r.key.id, "err", r.key.guards.err)
		return r.reject(errGuardrailConfig)
	}
	// Guardrails run last, so a request refused for cheaper reasons costs no evaluation.
	redacted, gerr := r.guardRequest(body)
	if gerr != nil {
		return r.reject(gerr)
	}
	// Spend is reserved last, once nothing else can refuse the request.
	admitted := body
	if redacted != nil {
		admitted = redacted
	}
	hold, warning, aerr := r.admit(admitted, chain)
	if aerr != nil {
		return r.reject(aerr)
	}
	claims.Hold, claims.BudgetWarning = hold, warning
	tok, err := r.srv.cfg.Signer.Sign(claims)
	if err != nil {
		r.release(hold)
		return r.reject(apierror.As(err))
	}
	r.dispatched = true
	r.tracePolicy(model)
	common := &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{
		SetHeaders: []*corev3.HeaderValueOption{setHeader(wire.HeaderContext, tok)},
	}}
	if redacted != nil {
		common.BodyMutation = &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: redacted}}
		common.HeaderMutation.SetHeaders = append(common.HeaderMutation.SetHeaders,
			setHeader("content-length", strconv.Itoa(len(redacted))))
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{
		RequestBody: &extprocv3.BodyResponse{Response: common},
	}}
}

func setHeader(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, RawValue: []byte(v)},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// reject answers the request with e in the client's dialect.
func (r *request) reject(e *apierror.Error) *extprocv3.ProcessingResponse {
	if e.Status >= 500 && e.Cause != nil {
		r.srv.cfg.Logger.Error("extproc: internal error", "request_id", r.id, "err", e.Cause)
	}
	r.traceRejection(e)
	r.logRejection(e)
	return r.immediate(e.Status, e.Body(r.route.Format, r.id), e.Code)
}

func (r *request) immediate(code int, body []byte, details string) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
		ImmediateResponse: &extprocv3.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(code)},
			Headers: &extprocv3.HeaderMutation{SetHeaders: r.responseHeaders()},
			Body:    body,
			Details: details,
		},
	}}
}

// responseHeaders are the headers of a response extproc answers itself.
func (r *request) responseHeaders() []*corev3.HeaderValueOption {
	hs := []*corev3.HeaderValueOption{setHeader("content-type", "application/json"), setHeader(wire.HeaderRequestID, r.id)}
	for _, h := range r.traceHeaders() {
		hs = append(hs, setHeader(h[0], h[1]))
	}
	for _, h := range r.extraHeaders {
		hs = append(hs, setHeader(h[0], h[1]))
	}
	return hs
}
