// Package dispatcher is the provider-facing half of Sluice: an HTTP server behind Envoy that
// serves only requests carrying a valid context token from extproc, walks the provider chain
// the token names, and sends each attempt down the passthrough lane (same wire format, bytes
// as-is) or the translation lane (Bifrost).
package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/dispatcher/breaker"
	"github.com/sluice-gateway/sluice/internal/apierror"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/counters"
	"github.com/sluice-gateway/sluice/internal/ctxtoken"
	"github.com/sluice-gateway/sluice/internal/logging"
	"github.com/sluice-gateway/sluice/internal/metrics"
	"github.com/sluice-gateway/sluice/internal/pricing"
	"github.com/sluice-gateway/sluice/internal/reqid"
	"github.com/sluice-gateway/sluice/internal/secretbox"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// Lane performs one attempt. Contract: until it writes to w it must leave w untouched and
// report Committed=false; once it writes, the attempt is final.
type Lane interface {
	Do(ctx context.Context, req *attempt.Request, w http.ResponseWriter) attempt.Result
}

// Config configures a Server.
type Config struct {
	Logger   *slog.Logger       // required
	Verifier *ctxtoken.Verifier // required
	// Translator handles attempts whose client and provider formats differ. Nil refuses them
	// with 502, which only a misconfiguration can cause.
	Translator Lane
	// Passthrough overrides the passthrough lane (tests, benchmarks); nil builds the default.
	Passthrough Lane
	// MaxRequestBytes bounds the body read from Envoy; 0 means 32 MiB + 1 MiB.
	MaxRequestBytes int64
	// Getenv resolves provider credentials named by environment variable; nil means os.Getenv.
	Getenv func(string) string
	// CredentialEnv lists the environment variables a provider's credentials_env may name.
	// Anything else is refused: whoever can edit providers must not be able to make the
	// dispatcher send an arbitrary variable of its environment to a host they choose.
	CredentialEnv []string
	// Keyring opens provider credentials sealed in the store; nil refuses sealed ones.
	Keyring *secretbox.Keyring
	// Tracer records each request's gateway span and one span per provider attempt; nil
	// records none.
	Tracer trace.Tracer
	// Metrics counts requests, tokens and fallbacks; nil counts nothing.
	Metrics *metrics.Metrics
	// AccessLog, when set, gets one line per request.
	AccessLog *slog.Logger
	// Counters holds budget spend and rate-limit windows: the dispatcher settles what
	// extproc reserved, and reserves providers' own limits per attempt. Nil: a provider
	// with limits meets the failure mode below, and holds cannot be settled (they expire).
	Counters counters.Store
	// CountersFailOpen tries providers without checking their limits while the counter
	// store cannot answer; false (the default) refuses with 503.
	CountersFailOpen bool
	// Prices is the price table costs are computed from; nil means the bundled one.
	Prices *pricing.Table
	// Now is the clock retry-after dates are read against; nil means time.Now.
	Now func() time.Time
	// Breakers tunes the per-provider circuit breakers (threshold, window, cooldown, clock);
	// zero values take the breaker package's defaults.
	Breakers breaker.Config
}

// Server is the dispatcher's http.Handler. Safe for concurrent use.
type Server struct {
	cfg       Config
	providers atomic.Pointer[map[string]*attempt.Provider]
	// capture holds the projects whose spans record prompts and completions.
	capture atomic.Pointer[map[string]bool]
	// breakers hold one circuit per provider credential, shared by every request.
	breakers  *breaker.Set
	storeWarn logging.EverySecond
}

// New returns a server with no providers; call Load before serving traffic.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil || cfg.Verifier == nil {
		return nil, errors.New("dispatcher: Logger and Verifier are required")
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = 33 << 20
	}
	if cfg.Getenv == nil {
		cfg.Getenv = os.Getenv
	}
	if cfg.Passthrough == nil {
		cfg.Passthrough = NewPassthrough(PassthroughConfig{})
	}
	if cfg.Prices == nil {
		cfg.Prices = pricing.Bundled()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg}
	bc := cfg.Breakers
	onChange := bc.OnChange
	bc.OnChange = func(id string, from, to breaker.State) {
		cfg.Metrics.CircuitState(id, metrics.CircuitState(to))
		cfg.Logger.Warn("dispatcher: circuit breaker", "provider", id, "from", from.String(), "to", to.String())
		if onChange != nil {
			onChange(id, from, to)
		}
	}
	s.breakers = breaker.New(bc)
	empty := map[string]*attempt.Provider{}
	s.providers.Store(&empty)
	s.capture.Store(&map[string]bool{})
	return s, nil
}

// Load compiles the providers of a static config file and publishes them.
func (s *Server) Load(c *config.Config) error {
	snap, err := c.Snapshot()
	if err != nil {
		return err
	}
	return s.LoadSnapshot(snap)
}

// LoadSnapshot compiles the providers of the control plane's snapshot and publishes them.
// A provider whose type the dispatcher does not serve yet is left out; one whose credential
// cannot be resolved keeps its last good form (or is left out when it has none). Both are
// reported; every other provider is published.
func (s *Server) LoadSnapshot(snap *config.Snapshot) error {
	r, decodeErr := snap.Decode()
	prev := *s.providers.Load()
	next := make(map[string]*attempt.Provider, len(r.Providers))
	errs := []error{decodeErr}
	for id, p := range r.Providers {
		if !p.Type.Dispatchable() {
			errs = append(errs, fmt.Errorf("provider %q: type %s is not served by this dispatcher yet", id, p.Type))
			continue
		}
		key, err := s.credential(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("provider %q: %w", id, err))
			if old := prev[id]; old != nil {
				next[id] = old
			}
			continue
		}
		base := p.BaseURL
		if base == "" {
			base = config.DefaultBaseURL(p.Type)
		}
		var az config.AzureConfig
		var cloud config.CloudConfig
		switch p.Type {
		case config.ProviderAzure:
			az, err = p.Azure()
		case config.ProviderBedrock, config.ProviderVertex:
			cloud, err = p.Cloud()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("provider %q: %w", id, err))
			continue
		}
		next[id] = &attempt.Provider{ID: id, Type: p.Type, BaseURL: strings.TrimSuffix(base, "/"), APIKey: key,
			Limits: p.Limits, Prices: p.Pricing, Timeouts: p.Timeouts, Azure: az, Region: cloud.Region, Project: cloud.Project}
	}
	s.providers.Store(&next)
	s.breakers.Forget(func(id string) bool { return next[id] != nil })
	for id := range prev {
		if next[id] == nil {
			s.cfg.Metrics.ForgetCircuit(id)
		}
	}
	capture := map[string]bool{}
	for id, p := range r.Projects {
		if p.Telemetry != nil && p.Telemetry.CaptureContent {
			capture[id] = true
		}
	}
	s.capture.Store(&capture)
	return errors.Join(errs...)
}

// credential resolves a provider's credential: sealed in the store (opened with the master
// keyring), or named by an environment variable, or none (a local model server).
func (s *Server) credential(p *config.ModelProvider) (string, error) {
	switch {
	case p.CredentialsEnv != "":
		if !slices.Contains(s.cfg.CredentialEnv, p.CredentialsEnv) {
			return "", fmt.Errorf("credentials_env %s is not in this dispatcher's allowed list (--provider-env)", p.CredentialsEnv)
		}
		v := s.cfg.Getenv(p.CredentialsEnv)
		if v == "" {
			return "", fmt.Errorf("environment variable %s is empty", p.CredentialsEnv)
		}
		return v, nil
	case !p.Credentials.IsZero():
		if s.cfg.Keyring == nil {
			return "", errors.New("credentials are sealed but no master key is configured")
		}
		b, err := s.cfg.Keyring.Open(p.Credentials, config.CredentialsAAD(p.ID))
		if err != nil {
			return "", err
		}
		return string(b), nil
	}
	return "", nil
}

var (
	errNoContext = apierror.New(http.StatusUnauthorized, "invalid_context",
		"Requests must pass through the Sluice gateway.")
	errUpstream = apierror.New(http.StatusBadGateway, "upstream_unavailable",
		"No provider could be reached.")
	errNoTranslator = apierror.New(http.StatusBadGateway, "translation_unavailable",
		"This provider needs translation, which is not enabled.")
	errCircuitOpen = apierror.New(http.StatusServiceUnavailable, "circuit_open",
		"Every provider for this model is failing and paused; try again shortly.")
)

// hopHeaders are never forwarded in either direction (RFC 9110 §7.6.1), plus headers that
// only the gateway or the transport may set.
var dropRequestHeaders = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Content-Length": true, "Authorization": true, "X-Api-Key": true,
	"Accept-Encoding": true, // identity upstream: SSE must not sit in a gzip buffer
	"X-Request-Id":    true, "X-Forwarded-For": true, "X-Forwarded-Proto": true,
	// With the gateway's credential, the client must not pick which organization or project
	// of the provider account it bills to; that is provider configuration.
	"Openai-Organization": true, "Openai-Project": true,
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	format := wire.OpenAI
	if strings.HasPrefix(r.URL.Path, "/v1/messages") {
		format = wire.Anthropic
	}
	claims, err := s.cfg.Verifier.Verify(r.Header.Get(wire.HeaderContext))
	if err != nil {
		// Reached without passing extproc (or with a forged or stale token): refuse. The id is
		// minted here because nothing trustworthy names this request.
		s.cfg.Logger.Warn("dispatcher: refused request without a valid context", "err", err)
		id := reqid.New()
		w.Header().Set(wire.HeaderRequestID, id)
		errNoContext.Write(w, format, id)
		return
	}
	w.Header().Set(wire.HeaderRequestID, claims.RequestID)
	format = wire.ParseFormat(claims.Format)
	endpoint := wire.ParseEndpoint(claims.Endpoint)
	obs, w := s.observe(r.Context(), w, claims, endpoint.Path())
	defer obs.finish()
	defer s.settle(obs) // before finish: the span and the access log carry the cost
	if route, ok := wire.Lookup(r.URL.Path, format == wire.Anthropic); !ok || route.Endpoint != endpoint {
		obs.fail(w, apierror.ErrNotFound, format)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, s.cfg.MaxRequestBytes+1))
	if err != nil || int64(len(body)) > s.cfg.MaxRequestBytes {
		obs.fail(w, apierror.New(http.StatusBadRequest, "invalid_request_error", "Could not read the request body."), format)
		return
	}
	header := make(http.Header, len(r.Header))
	for k, v := range r.Header {
		if dropRequestHeaders[k] || strings.HasPrefix(k, "X-Sluice-") || strings.HasPrefix(k, "X-Envoy-") {
			continue
		}
		header[k] = v
	}
	// Headers the client nominated in Connection are for the next hop only (RFC 9110 §7.6.1).
	for _, v := range r.Header["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			header.Del(strings.TrimSpace(name))
		}
	}
	body = applyCacheMode(w, claims.CacheMode, format, body)
	if claims.BudgetWarning != "" {
		w.Header().Set(wire.HeaderBudgetWarning, claims.BudgetWarning)
	}
	req := attempt.Request{
		RequestID: claims.RequestID, ClientFormat: format, Endpoint: endpoint, Stream: claims.Stream,
		Body: body, Header: header, RawQuery: r.URL.RawQuery,
	}
	s.walk(obs, w, &req, claims.Chain, claims.Fallback)
}

// triggers reports whether a failure of class reason may move the request on.
func triggers(fb *ctxtoken.Fallback, reason string) bool {
	return fb == nil || len(fb.Triggers) == 0 || slices.Contains(fb.Triggers, reason)
}

// walk tries each provider of the chain in order until one answers, a non-retryable error
// ends the walk, or an attempt commits a response to the client.
func (s *Server) walk(obs *observation, w http.ResponseWriter, req *attempt.Request, chain []ctxtoken.Attempt, fb *ctxtoken.Fallback) {
	ctx := obs.ctx
	providers := *s.providers.Load()
	var last *attempt.Result
	var limited *providerLimited // the soonest-free provider skipped for its rate limits
	circuitOpen := false         // a provider was skipped for its open circuit
	var storeErr *apierror.Error // a provider was skipped: its limits could not be checked
	failed := 0
	retries := 0
	if fb != nil {
		retries = fb.Retries
	}
walk:
	for i, a := range chain {
		p := providers[a.Provider]
		if p == nil {
			s.cfg.Logger.Warn("dispatcher: provider in chain is not configured", "request_id", req.RequestID, "provider", a.Provider)
			continue
		}
		if req.Endpoint == wire.CountTokens && p.Type != config.ProviderAnthropic {
			// Only Anthropic counts tokens for a Messages body; for any other provider the
			// gateway estimates, and says so.
			w.Header().Set(wire.HeaderFallbackCount, strconv.Itoa(failed))
			countTokensLocally(w, req.Body)
			obs.status = http.StatusOK
			return
		}
		// One attempt per provider, and as many retries of it as the key allows.
		for try := 0; ; try++ {
			if fb != nil && fb.MaxAttempts > 0 && obs.attempts >= fb.MaxAttempts {
				break walk
			}
			permit, ok := s.breakers.Allow(p.ID)
			if !ok && s.breakers.State(p.ID) == breaker.Closed {
				// Paused by the provider's own retry-after: rate-limited, not failing.
				if d := s.breakers.PausedFor(p.ID); d > 0 && (limited == nil || d < limited.retryAfter) {
					limited = &providerLimited{provider: p.ID, limit: "retry-after", retryAfter: d}
				}
				if !triggers(fb, string(config.Trigger429)) {
					break walk
				}
				continue walk
			}
			if !ok {
				// Open: skipped, not attempted.
				circuitOpen = true
				if !triggers(fb, string(config.TriggerCircuitOpen)) {
					break walk
				}
				if i < len(chain)-1 {
					s.cfg.Metrics.Fallback(p.ID, string(config.TriggerCircuitOpen))
				}
				continue walk
			}
			req.Provider, req.Model, req.Try = p, a.Model, try
			lane := s.cfg.Passthrough
			if !p.Type.Speaks(req.ClientFormat) {
				if lane = s.cfg.Translator; lane == nil {
					permit.Record(breaker.Neutral)
					obs.fail(w, errNoTranslator, req.ClientFormat)
					return
				}
			}
			hold, lim, herr := s.reserveProvider(ctx, req, p)
			if herr != nil {
				// Its limits cannot be checked: skipped, like a full limit; another provider
				// may have none.
				permit.Record(breaker.Neutral)
				storeErr = herr
				continue walk
			}
			if lim != nil {
				permit.Record(breaker.Neutral)
				if limited == nil || lim.retryAfter < limited.retryAfter {
					limited = lim
				}
				continue walk
			}
			w.Header().Set(wire.HeaderFallbackCount, strconv.Itoa(failed))
			span, start := obs.beginAttempt(req), time.Now()
			res := s.attempt(ctx, lane, req, w, permit)
			obs.endAttempt(span, req, start, &res)
			s.settleProvider(ctx, req, hold, &res)
			recordOutcome(ctx, permit, &res, s.cfg.Now())
			if res.Committed {
				obs.status = res.Status
				if res.Abort {
					// After the attempt is recorded: the deferred settle sees a cut answer.
					panic(http.ErrAbortHandler)
				}
				return
			}
			if res.Err != nil {
				s.cfg.Logger.Warn("dispatcher: attempt failed", "request_id", req.RequestID,
					"provider", p.ID, "status", res.Status, "err", res.Err)
			}
			last = &res
			if !res.Retryable || ctx.Err() != nil || !triggers(fb, fallbackReason(&res)) {
				break walk
			}
			failed++
			obs.failed = failed
			if try < retries && s.pause(ctx, &res, try) {
				continue // the same provider again
			}
			if i < len(chain)-1 { // a fallback only when another provider follows
				s.cfg.Metrics.Fallback(p.ID, fallbackReason(&res))
			}
			break
		}
	}
	if (last == nil || last.Status == 0) && limited != nil {
		s.rateLimited(obs, w, req, limited)
		return
	}
	if last == nil && storeErr != nil {
		obs.fail(w, storeErr, req.ClientFormat)
		return
	}
	if last == nil && circuitOpen {
		obs.fail(w, errCircuitOpen, req.ClientFormat)
		return
	}
	if last == nil || last.Status == 0 {
		obs.fail(w, errUpstream, req.ClientFormat)
		return
	}
	obs.status, obs.errCode = last.Status, fallbackReason(last)
	// Every attempt failed: the last provider's error goes back verbatim with its status.
	h := w.Header()
	for k, v := range last.Header {
		if !dropResponseHeaders[k] && !strings.HasPrefix(k, "X-Sluice-") {
			h[k] = v
		}
	}
	h.Set("Content-Length", strconv.Itoa(len(last.Body)))
	w.WriteHeader(last.Status)
	_, _ = w.Write(last.Body)
}

// recordOutcome tells the provider's circuit breaker how an attempt went. A 5xx, a timeout,
// a network error or a stream the provider cut is a failure; a 429 is not, but its
// retry-after pauses the provider; a client that left or a 4xx says nothing about the
// provider's health.
func recordOutcome(ctx context.Context, permit breaker.Permit, res *attempt.Result, now time.Time) {
	switch {
	case ctx.Err() != nil:
		permit.Record(breaker.Neutral)
	case res.Status == http.StatusTooManyRequests:
		if d, ok := retryAfter(res.Header, now); ok {
			permit.RecordRateLimited(now.Add(d))
		} else {
			permit.Record(breaker.RateLimited)
		}
	case res.Status >= 500 || res.Timeout || res.Status == 0 || (res.Committed && res.Err != nil):
		permit.Record(breaker.Failure)
	case res.Status < 400:
		permit.Record(breaker.Success)
	default:
		permit.Record(breaker.Neutral)
	}
}

// retryAfter reads how long a provider asked to be left alone: retry-after-ms (OpenAI),
// retry-after in seconds or as an HTTP date.
func retryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	// A provider's number is clamped to a day before it becomes a duration: "1e30" or "Inf"
	// would overflow into a negative wait.
	const maxSecs = 24 * 60 * 60
	if v := h.Get("Retry-After-Ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 && !math.IsNaN(ms) {
			return time.Duration(min(ms, maxSecs*1000) * float64(time.Millisecond)), true
		}
	}
	v := h.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if math.IsNaN(secs) || secs <= 0 {
			return 0, false
		}
		return time.Duration(min(secs, maxSecs) * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now), true
	}
	return 0, false
}

// countTokensLocally answers POST /v1/messages/count_tokens with an estimate: about four
// bytes of request per token, what a client needs to budget its context window.
func countTokensLocally(w http.ResponseWriter, body []byte) {
	out := []byte(`{"input_tokens":` + strconv.FormatInt(pricing.EstimateTokens(int64(len(body))), 10) + `}`)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(out)))
	h.Set("X-Sluice-Token-Count", "estimate")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

// attempt runs one attempt on lane under the provider's first-byte timeout (whatever the
// lane), and tells the breaker of a success as soon as the answer begins: a probe whose
// stream runs for minutes closes its circuit when its first byte arrives, not when it ends.
func (s *Server) attempt(ctx context.Context, lane Lane, req *attempt.Request, w http.ResponseWriter, permit breaker.Permit) attempt.Result {
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timer := time.AfterFunc(firstByteTimeout(req), func() { cancel(errFirstByteTimeout) })
	defer timer.Stop()
	cw := &commitWatch{ResponseWriter: w, onCommit: func(status int) {
		timer.Stop()
		if status < 400 {
			permit.Record(breaker.Success)
		}
	}}
	res := lane.Do(actx, req, cw)
	if !res.Committed && ctx.Err() == nil && errors.Is(context.Cause(actx), errFirstByteTimeout) {
		res.Timeout, res.Retryable = true, true
	}
	return res
}

// firstByteTimeout bounds the wait for an attempt's answer to begin: the provider's own,
// else 60 s for a stream and 10 min for an answer that begins only when it is complete.
func firstByteTimeout(req *attempt.Request) time.Duration {
	if ms := req.Provider.Timeouts.FirstByteMS; ms > 0 {
		return time.Duration(ms) * time.Millisecond
	}
	if req.Stream {
		return defaultStreamFirstByte
	}
	return defaultFirstByte
}

const (
	defaultStreamFirstByte = time.Minute
	defaultFirstByte       = 10 * time.Minute
)

var errFirstByteTimeout = errors.New("provider sent nothing before the first-byte timeout")

// commitWatch sees the first byte of an answer reach the client.
type commitWatch struct {
	http.ResponseWriter
	onCommit  func(status int)
	committed bool
}

func (c *commitWatch) commit(status int) {
	if !c.committed {
		c.committed = true
		c.onCommit(status)
	}
}

func (c *commitWatch) WriteHeader(status int) {
	c.commit(status)
	c.ResponseWriter.WriteHeader(status)
}

func (c *commitWatch) Write(p []byte) (int, error) {
	c.commit(http.StatusOK)
	return c.ResponseWriter.Write(p)
}

// Flush and Unwrap keep SSE flowing through the wrapper.
func (c *commitWatch) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (c *commitWatch) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// maxRetryWait is the longest a retry of the same provider waits. A provider asking for
// longer (retry-after) is left for the next one instead: a client is waiting.
const maxRetryWait = 5 * time.Second

// pause waits before retrying the same provider after failed attempt try: the provider's
// own retry-after when it gave one, else a short exponential backoff. It reports false
// (no retry) when the provider asked for longer than maxRetryWait or the client left.
func (s *Server) pause(ctx context.Context, res *attempt.Result, try int) bool {
	d, ok := retryAfter(res.Header, s.cfg.Now())
	if !ok {
		d = min(250*time.Millisecond<<try, 2*time.Second)
	}
	if d > maxRetryWait {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
