// Package translate is the dispatcher's translation lane: one provider attempt whose client
// wire format differs from the provider's (an OpenAI chat client on an Anthropic provider,
// an OpenAI Responses client on an Anthropic provider, an Anthropic Messages client on an
// OpenAI or OpenAI-compatible provider, any of the three on a Gemini, Bedrock or Vertex AI
// provider). Requests are converted and sent through Bifrost core; responses are rendered
// back in the client's format by this package, not by Bifrost's client-side converters,
// because the official SDKs and the coding CLIs depend on details (event order, first
// tool-call fragment, usage placement, one terminal event) that those converters do not
// keep.
package translate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	bifrost "github.com/maximhq/bifrost/core"
	"github.com/maximhq/bifrost/core/schemas"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/apierror"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// Config tunes the lane. The zero value is usable.
type Config struct {
	// Logger receives Bifrost's and the lane's diagnostics. Default: slog.Default().
	Logger *slog.Logger
	// RequestTimeout bounds one upstream request (the whole body when not streaming).
	// Default: 10 minutes; Bifrost counts whole seconds.
	RequestTimeout time.Duration
	// StreamIdleTimeout ends a stream that sends nothing for this long. Default: 5 minutes.
	StreamIdleTimeout time.Duration
	// Concurrency is the number of Bifrost workers per provider type, i.e. the number of
	// non-streaming requests in flight at once (a stream holds a worker only until its
	// response headers arrive). Default: 512.
	Concurrency int
	// QueueSize is how many requests may wait for a worker; beyond it an attempt fails at
	// once with a retryable 502 so the chain moves on. Default: 2048.
	QueueSize int

	// caCertPEM is a CA the Gemini, Bedrock and Vertex pools trust besides the system's:
	// tests only, for a local https provider. In production they trust the system's CAs
	// only.
	caCertPEM string
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 10 * time.Minute
	}
	if c.StreamIdleTimeout <= 0 {
		c.StreamIdleTimeout = 5 * time.Minute
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 512
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 2048
	}
}

// Engine runs translated attempts. Safe for concurrent use.
type Engine struct {
	client *bifrost.Bifrost
	log    *slog.Logger
}

// New starts the Bifrost client behind the lane. ctx bounds its lifetime, as does Close.
func New(ctx context.Context, cfg Config) (*Engine, error) {
	cfg.setDefaults()
	client, err := bifrost.Init(ctx, schemas.BifrostConfig{
		Account: newAccount(cfg),
		Logger:  slogLogger{cfg.Logger},
		// A full queue should fail the attempt fast so the chain can fall back, not
		// block the client behind other tenants' requests.
		DropExcessRequests: true,
	})
	if err != nil {
		return nil, fmt.Errorf("translate: init bifrost: %w", err)
	}
	return &Engine{client: client, log: cfg.Logger}, nil
}

// Close stops Bifrost's workers. In-flight attempts are cut.
func (e *Engine) Close() { e.client.Shutdown() }

// direction is one supported client-format → provider-format pair.
type direction struct {
	// parse turns the client body into a Bifrost request.
	parse func(bctx *schemas.BifrostContext, body []byte) (*schemas.BifrostChatRequest, clientOptions, error)
	// upstream is the Bifrost provider pool the attempt goes through, and target the URL
	// (or, for Gemini, the scheme-relative URL) it is sent to; see attemptContext. Bedrock
	// has no target: Bifrost builds its URL from the key's region.
	upstream schemas.ModelProvider
	target   func(req *attempt.Request) string
	// key, when set, builds the attempt's Bifrost key in place of credential; an error
	// refuses the attempt, uncommitted, with the failure, before anything is sent.
	key func(req *attempt.Request) (schemas.Key, failure, error)
	// render writes a complete non-streaming response in the client's format, and returns
	// the finish reasons it wrote, in choice order.
	render func(resp *schemas.BifrostChatResponse, req *attempt.Request) ([]byte, []string, error)
	// newStream returns the client-format renderer for one stream.
	newStream func(req *attempt.Request, opts clientOptions) streamRenderer
	// adapt, when set, returns one attempt's fix-up for the provider's answers: every
	// Bifrost chat response and stream chunk goes through it before it is rendered.
	adapt func() func(*schemas.BifrostChatResponse)
	// run, when set, performs the attempt instead of the chat flow above: the OpenAI
	// Responses directions, which have their own request, response and event model. The
	// chat fields are unset for them.
	run func(e *Engine, bctx *schemas.BifrostContext, req *attempt.Request, dir direction, w http.ResponseWriter) attempt.Result
}

// at returns the target of a provider served at a fixed path under its base URL.
func at(path string) func(req *attempt.Request) string {
	return func(req *attempt.Request) string { return strings.TrimRight(req.Provider.BaseURL, "/") + path }
}

// clientOptions are request details the renderers need that Bifrost does not carry back.
type clientOptions struct {
	includeUsage bool // OpenAI stream_options.include_usage
}

// streamRenderer turns Bifrost chunks into client events, appending them to buf.
type streamRenderer interface {
	// chunk renders one upstream chunk.
	chunk(buf *bytes.Buffer, c *schemas.BifrostChatResponse)
	// done reports whether the upstream sent its final chunk (finish reason).
	done() bool
	// finish closes the stream cleanly.
	finish(buf *bytes.Buffer)
	// fail ends the stream with an error event.
	fail(buf *bytes.Buffer, f failure)
	// finishReasons returns the finish reasons finish wrote, in the client's vocabulary
	// (nil before finish).
	finishReasons() []string
}

// pick returns the direction that serves req. It reports false for every pair the lane does
// not translate: endpoints without an equivalent on the provider (embeddings, compaction and
// token counting across formats, model listings) and requests whose formats already match.
func pick(req *attempt.Request) (direction, bool) {
	switch {
	case req.Provider.Type == config.ProviderGemini:
		// Before the OpenAI case: Gemini's Format is OpenAI's, but its wire is its own.
		return pickGemini(req)
	case req.Provider.Type == config.ProviderBedrock:
		return pickBedrock(req)
	case req.Provider.Type == config.ProviderVertex:
		return pickVertex(req)
	case req.ClientFormat == wire.OpenAI && req.Endpoint == wire.Responses &&
		req.Provider.Type == config.ProviderAnthropic:
		return direction{upstream: schemas.Anthropic, target: at("/v1/messages"), run: (*Engine).doResponses}, true
	case req.ClientFormat == wire.OpenAI && req.Endpoint == wire.ChatCompletions &&
		req.Provider.Type == config.ProviderAnthropic:
		return direction{parse: parseOpenAIChat, upstream: schemas.Anthropic, target: at("/v1/messages"),
			render: renderOpenAIChat, newStream: newOpenAIStream}, true
	case req.ClientFormat == wire.Anthropic && req.Endpoint == wire.Messages &&
		req.Provider.Type.Speaks(wire.OpenAI):
		return direction{parse: parseAnthropicMessages, upstream: schemas.OpenAI, target: at("/v1/chat/completions"),
			render: renderAnthropicMessage, newStream: newAnthropicStream}, true
	}
	return direction{}, false
}

// Do performs one attempt whose req.ClientFormat differs from the provider's format.
// Until it writes to w the Result is uncommitted and carries the error in the client's
// format; once it writes, the Result is committed and a broken stream ends with an error
// event in the client's format. A committed Result carries the usage, model and finish
// reasons Bifrost parsed from the provider's answer (see usageOf and responsesAttemptUsage).
func (e *Engine) Do(ctx context.Context, req *attempt.Request, w http.ResponseWriter) (res attempt.Result) {
	defer func() { res.Done = time.Now() }()
	dir, ok := pick(req)
	if !ok {
		return unsupported(req)
	}
	key := credential(req.Provider.ID, req.Provider.APIKey)
	if dir.key != nil {
		k, f, err := dir.key(req)
		if err != nil {
			return uncommitted(req, f, err)
		}
		key = k
	}
	bctx := e.attemptContext(ctx, req, dir, key)
	defer bctx.Cancel()
	if dir.run != nil {
		return dir.run(e, bctx, req, dir, w)
	}

	breq, opts, err := dir.parse(bctx, req.Body)
	if err != nil {
		// The same body would fail on every provider.
		return uncommitted(req, failure{status: http.StatusBadRequest, code: "invalid_request_error",
			message: "The request body could not be parsed."}, err)
	}
	breq.Provider = dir.upstream
	breq.Model = req.Model
	breq.Fallbacks = nil
	fix := func(*schemas.BifrostChatResponse) {}
	if dir.adapt != nil {
		fix = dir.adapt()
	}

	if req.Stream {
		return e.stream(bctx, req, dir, breq, opts, fix, w)
	}
	resp, berr := e.client.ChatCompletionRequest(bctx, breq)
	// Bifrost hands the answer over whole: its arrival stands for the first byte's.
	answered := time.Now()
	if berr != nil {
		return providerFailure(bctx, req, berr, answered)
	}
	fix(resp)
	body, reasons, err := dir.render(resp, req)
	if err != nil {
		res = uncommitted(req, failure{status: http.StatusBadGateway, code: "upstream_error",
			message: "The provider's response could not be translated.", retryable: true}, err)
		res.FirstByte = answered
		return res
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	w.WriteHeader(http.StatusOK)
	res = attempt.Result{Status: http.StatusOK, Committed: true, FirstByte: answered,
		Usage: usageOf(resp.Usage), ResponseModel: resp.Model, FinishReasons: reasons}
	if _, err := w.Write(body); err != nil {
		res.Err = fmt.Errorf("translate: write response: %w", err)
	}
	return res
}

// attemptContext carries the per-attempt provider URL and credential to Bifrost. Bifrost
// builds one provider per type with a fixed base URL; a complete URL in
// BifrostContextKeyURLPath overrides it per request (providers/utils.GetRequestPath), and
// for Gemini, whose provider only appends that value to its base URL, the rest of the URL
// after the pool's scheme does (see geminiPools). A Bedrock attempt's region travels in
// its key (see bedrockKey), as do a Vertex attempt's region and project (see vertexKey).
func (e *Engine) attemptContext(ctx context.Context, req *attempt.Request, dir direction, key schemas.Key) *schemas.BifrostContext {
	bctx := schemas.NewBifrostContext(ctx, schemas.NoDeadline)
	bctx.SetValue(ctxKeyCredential{}, key)
	bctx.SetValue(schemas.BifrostContextKeyDirectKey, key)
	if dir.target != nil {
		bctx.SetValue(schemas.BifrostContextKeyURLPath, dir.target(req))
	}
	bctx.SetValue(schemas.BifrostContextKeyRequestID, req.RequestID)
	if dir.upstream == schemas.Anthropic || (dir.upstream == schemas.Vertex && vertexFamily(req.Model) == schemas.ModelFamilyAnthropic) {
		// anthropic-version is pinned by Bifrost's Anthropic provider (the version its
		// converter targets); beta flags still matter (prompt caching, long context).
		// Bifrost's Vertex provider sends them to Claude as the body's anthropic_beta.
		if betas := req.Header.Values("anthropic-beta"); len(betas) > 0 {
			bctx.SetValue(schemas.BifrostContextKeyExtraHeaders, map[string][]string{"anthropic-beta": betas})
		}
	}
	return bctx
}

func (e *Engine) stream(bctx *schemas.BifrostContext, req *attempt.Request, dir direction,
	breq *schemas.BifrostChatRequest, opts clientOptions, fix func(*schemas.BifrostChatResponse), w http.ResponseWriter) attempt.Result {
	ch, berr := e.client.ChatCompletionStreamRequest(bctx, breq)
	first, res, ok := openStream(bctx, req, ch, berr, w)
	if !ok {
		return res
	}
	rc := http.NewResponseController(w)
	r := dir.newStream(req, opts)
	// Bifrost puts the usage and the model on the final chunk (an OpenAI provider's model
	// is on every chunk); a stream cut before it reports neither.
	var usage *schemas.BifrostLLMUsage
	report := func() {
		res.Usage = usageOf(usage)
		res.FinishReasons = r.finishReasons()
	}
	var buf bytes.Buffer
	flush := func() bool { return flushTo(w, rc, &buf, &res) }

	c := first
	for {
		if c.BifrostError != nil {
			f := classify(bctx, c.BifrostError)
			if f.code == "upstream_unreachable" {
				// After commit this means the connection died mid-stream (Bifrost reports
				// a truncated stream as a connection failure).
				f.code, f.message = "upstream_stream_interrupted", "The provider stream was interrupted."
			}
			r.fail(&buf, f)
			flush()
			res.Err = bifrostCause(c.BifrostError)
			go drain(ch)
			report()
			return res
		}
		if c.BifrostChatResponse != nil {
			fix(c.BifrostChatResponse)
			if u := c.BifrostChatResponse.Usage; u != nil {
				usage = u
			}
			if m := c.BifrostChatResponse.Model; m != "" {
				res.ResponseModel = m
			}
			r.chunk(&buf, c.BifrostChatResponse)
			if !flush() {
				go drain(ch) // client gone; bctx.Cancel stops the upstream read
				report()
				return res
			}
		}
		var ok bool
		if c, ok = next(bctx, ch); !ok {
			break
		}
	}
	if !r.done() {
		// The channel closed without a final chunk: the upstream stream was cut and Bifrost
		// did not say so. A clean end here would turn a truncated answer into a success.
		r.fail(&buf, failure{status: http.StatusBadGateway, code: "upstream_error",
			message: "The provider stream ended unexpectedly.", retryable: true})
		flush()
		if res.Err == nil {
			res.Err = errors.New("translate: upstream stream ended without a finish reason")
		}
		report()
		return res
	}
	r.finish(&buf)
	flush()
	report()
	return res
}

// next receives one chunk, giving up when the attempt's context ends.
func next(ctx context.Context, ch chan *schemas.BifrostStreamChunk) (*schemas.BifrostStreamChunk, bool) {
	for {
		select {
		case c, ok := <-ch:
			if !ok {
				return nil, false
			}
			if c == nil {
				continue
			}
			return c, true
		case <-ctx.Done():
			return nil, false
		}
	}
}

// drain lets Bifrost's stream goroutine finish sending after the lane stopped listening;
// it ends when Bifrost closes the channel (the attempt context is already cancelled).
func drain(ch chan *schemas.BifrostStreamChunk) {
	for range ch {
	}
}

// failure is an attempt error as the client will see it.
type failure struct {
	status    int
	code      string
	message   string
	retryable bool
	answered  bool // the provider answered with this error status (not a network failure)
}

// providerFailure is the uncommitted Result for a Bifrost error that arrived at the given
// time. The provider's retry hints ride along: if this is the chain's last attempt, the
// client SDK honours them.
func providerFailure(bctx *schemas.BifrostContext, req *attempt.Request, berr *schemas.BifrostError, at time.Time) attempt.Result {
	f := classify(bctx, berr)
	res := uncommitted(req, f, bifrostCause(berr))
	if f.answered {
		res.FirstByte = at
	}
	hs, _ := bctx.Value(schemas.BifrostContextKeyProviderResponseHeaders).(map[string]string)
	for k, v := range hs {
		switch strings.ToLower(k) {
		case "retry-after", "retry-after-ms", "x-should-retry":
			res.Header.Set(k, v)
		}
	}
	return res
}

// unsupported refuses a request the lane cannot translate for this provider. It is a 400
// and not retryable: the same request would be refused again, and the operator must route
// the endpoint to a provider that serves it natively.
func unsupported(req *attempt.Request) attempt.Result {
	what := "this endpoint"
	if p := req.Endpoint.Path(); p != "" {
		what = p
	}
	// Retryable: the lane's limit, not the provider's answer; a later provider of the chain
	// may serve the request natively.
	return uncommitted(req, failure{status: http.StatusBadRequest, code: "unsupported_endpoint",
		message: fmt.Sprintf("The provider for this model does not serve %s.", what), retryable: true},
		fmt.Errorf("translate: no translation from %s %s to %s", req.ClientFormat, req.Endpoint, req.Provider.Type))
}

func uncommitted(req *attempt.Request, f failure, cause error) attempt.Result {
	h := make(http.Header, 2)
	h.Set("Content-Type", "application/json")
	ae := &apierror.Error{Status: f.status, Code: f.code, Message: f.message}
	return attempt.Result{
		Status:    f.status,
		Retryable: f.retryable,
		Header:    h,
		Body:      ae.Body(req.ClientFormat, req.RequestID),
		Err:       cause,
	}
}

// maxProviderMessage bounds a relayed provider error message (some answer with HTML).
const maxProviderMessage = 2048

// classify maps a Bifrost error to what the client sees. Only messages the provider
// itself sent are relayed; Bifrost's own messages can embed Go error text.
func classify(ctx context.Context, berr *schemas.BifrostError) failure {
	status := 0
	if berr.StatusCode != nil {
		status = *berr.StatusCode
	}
	var typ, code, msg string
	var hasCause bool
	if berr.Error != nil {
		if berr.Error.Type != nil {
			typ = *berr.Error.Type
		}
		if berr.Error.Code != nil {
			code = *berr.Error.Code
		}
		msg = berr.Error.Message
		hasCause = berr.Error.Error != nil
	}
	if typ == "" && berr.Type != nil {
		typ = *berr.Type
	}
	// Type or code set means Bifrost parsed the provider's own error JSON.
	parsed := typ != "" || code != ""
	if _, err := strconv.Atoi(code); err == nil {
		// Gemini (and some OpenAI-compatible servers) repeat the HTTP status as the code;
		// the type (Gemini's status name, RESOURCE_EXHAUSTED) is the one that says more.
		code = ""
	}
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled):
		return failure{status: 499, code: "client_closed_request", message: "The client closed the request."}
	case typ == schemas.RequestTimedOut || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return failure{status: http.StatusGatewayTimeout, code: "upstream_timeout",
			message: "The provider did not answer in time.", retryable: true}
	case typ == schemas.ProviderConnectionFailed:
		return failure{status: http.StatusBadGateway, code: "upstream_unreachable",
			message: "The provider could not be reached.", retryable: true}
	case !berr.IsBifrostError && status >= 400:
		f := failure{status: status, code: firstNonEmpty(code, typ, "provider_error"), answered: true,
			retryable: status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout}
		if parsed && !hasCause && msg != "" {
			if len(msg) > maxProviderMessage {
				msg = msg[:maxProviderMessage]
			}
			f.message = msg
		} else {
			f.message = fmt.Sprintf("The provider answered with HTTP %d.", status)
		}
		return f
	case status == http.StatusBadRequest:
		// Bifrost's request validation (e.g. an unsatisfiable thinking budget); its
		// message describes the client's input.
		m := "The request cannot be translated for this provider."
		if !hasCause && msg != "" {
			m = msg
		}
		return failure{status: http.StatusBadRequest, code: "invalid_request_error", message: m}
	}
	return failure{status: http.StatusBadGateway, code: "upstream_error",
		message: "The provider's response could not be processed.", retryable: true}
}

// bifrostCause turns a Bifrost error into an error for logs (Result.Err), never rendered.
func bifrostCause(berr *schemas.BifrostError) error {
	if berr == nil || berr.Error == nil {
		return errors.New("translate: bifrost error")
	}
	if berr.Error.Error != nil {
		return fmt.Errorf("translate: %s: %w", berr.Error.Message, berr.Error.Error)
	}
	return fmt.Errorf("translate: %s", berr.Error.Message)
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// openStream waits for a stream's first chunk and, once it proves the stream healthy,
// commits the SSE answer. Nothing is written before: an error that arrives as the stream's
// first event (or before it) is an uncommitted failure, and the chain can still fall back.
// ok reports a committed stream, whose Result (FirstByte set: Bifrost parses each event
// before handing it over, so the first chunk's arrival stands for the first byte's) the
// caller completes; otherwise the Result is the failure to return.
func openStream(bctx *schemas.BifrostContext, req *attempt.Request, ch chan *schemas.BifrostStreamChunk,
	berr *schemas.BifrostError, w http.ResponseWriter) (*schemas.BifrostStreamChunk, attempt.Result, bool) {
	if berr != nil {
		return nil, providerFailure(bctx, req, berr, time.Now()), false
	}
	first, ok := next(bctx, ch)
	if !ok || first.BifrostError != nil {
		go drain(ch)
		if !ok {
			return nil, uncommitted(req, failure{status: http.StatusBadGateway, code: "upstream_error",
				message: "The provider ended the stream without a response.", retryable: true},
				errors.New("translate: empty upstream stream")), false
		}
		return nil, providerFailure(bctx, req, first.BifrostError, time.Now()), false
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Del("Content-Length")
	w.WriteHeader(http.StatusOK)
	return first, attempt.Result{Status: http.StatusOK, Committed: true, FirstByte: time.Now()}, true
}

// flushTo writes the events buf holds to the client and flushes them, recording the first
// write error on res; it reports whether the client still reads.
func flushTo(w http.ResponseWriter, rc *http.ResponseController, buf *bytes.Buffer, res *attempt.Result) bool {
	if buf.Len() == 0 {
		return true
	}
	_, err := w.Write(buf.Bytes())
	buf.Reset()
	if err == nil {
		err = rc.Flush()
	}
	if err != nil && res.Err == nil {
		res.Err = fmt.Errorf("translate: write stream: %w", err)
	}
	return err == nil
}
