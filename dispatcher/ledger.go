package dispatcher

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/dispatcher/cachectl"
	"github.com/sluice-gateway/sluice/internal/apierror"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/counters"
	"github.com/sluice-gateway/sluice/internal/ctxtoken"
	"github.com/sluice-gateway/sluice/internal/money"
	"github.com/sluice-gateway/sluice/internal/pricing"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// The dispatcher's side of governance: it prices what a request really cost, settles the
// hold extproc reserved with it (exactly once, keyed by the request id), and keeps each
// provider's own rate limits per attempt.

// settleTimeout bounds one settle; the response has already reached the client.
const settleTimeout = 5 * time.Second

// settle prices the served attempt and ends the request's hold with the real figures: the
// provider's own usage, priced. What is not known keeps what was reserved, so spend is
// never recorded as $0 for tokens a provider may bill:
//   - an answer cut short (the stream broke, the client left) whose input the provider had
//     reported is priced with that input and its full max_tokens of output;
//   - one whose usage is unknown altogether, or whose model has no price, keeps its
//     reserved worst case.
//
// A request no provider answered is released: it cost nothing.
func (s *Server) settle(o *observation) {
	c, res, h := o.claims, o.served, o.claims.Hold
	var actual map[counters.Unit]int64 // nil: every unit settles at what it reserved
	if res != nil {
		u := res.Usage
		known := u.InputTokens > 0 || u.OutputTokens > 0
		if res.Err != nil && h != nil {
			// Cut: the output so far is unknown, but cannot pass max_tokens.
			known = u.InputTokens > 0 && h.MaxOutput > 0
			u.OutputTokens = max(u.OutputTokens, h.MaxOutput)
			o.estimated = true
		}
		if known {
			actual = map[counters.Unit]int64{counters.UnitTokens: u.InputTokens + u.OutputTokens}
			if o.cost, o.priced = s.price(o.servedProvider, o.servedWith, res.ResponseModel, u); o.priced {
				actual[counters.UnitNanoUSD] = int64(o.cost)
			}
		}
	}
	if h == nil {
		return
	}
	if res != nil && actual[counters.UnitNanoUSD] == 0 && !o.priced {
		for _, cn := range h.Counters { // the reserved worst case stands
			if cn.Unit == counters.UnitNanoUSD {
				o.cost, o.priced, o.estimated = money.NanoUSD(cn.Amount), true, true
				break
			}
		}
	}
	store := s.cfg.Counters
	if store == nil {
		s.cfg.Logger.Debug("dispatcher: no counter store to settle a hold in", "request_id", c.RequestID)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(o.ctx), settleTimeout)
	defer cancel()
	var err error
	if res == nil {
		err = store.Release(ctx, h.Slot, c.RequestID, h.Counters)
	} else {
		err = store.Settle(ctx, h.Slot, c.RequestID, h.Counters, actual)
	}
	if err != nil {
		s.cfg.Metrics.CounterStoreError("settle")
		s.cfg.Logger.Error("dispatcher: settling spend failed; the hold will expire unspent",
			"request_id", c.RequestID, "err", err)
	}
}

// price is what usage costs at the provider's prices: for the model the attempt was sent,
// else the model the provider says answered.
func (s *Server) price(p *attempt.Provider, model, responseModel string, u attempt.Usage) (money.NanoUSD, bool) {
	if p == nil {
		return 0, false
	}
	price, ok := pricing.Resolve(s.cfg.Prices, string(p.Type), p.Prices, model)
	if !ok && responseModel != "" {
		price, ok = pricing.Resolve(s.cfg.Prices, string(p.Type), p.Prices, responseModel)
	}
	if !ok {
		return 0, false
	}
	return price.Cost(pricing.Usage{InputTokens: u.InputTokens, OutputTokens: u.OutputTokens,
		CacheReadTokens: u.CacheReadTokens, CacheCreationTokens: u.CacheCreationTokens,
		CacheCreation1hTokens: u.CacheCreation1hTokens, ReasoningTokens: u.ReasoningTokens}), true
}

// providerLimited is a provider skipped because one of its rate limits is full.
type providerLimited struct {
	provider   string
	limit      string // "rpm"
	value      int64
	retryAfter time.Duration
}

var errCounterStore = apierror.New(http.StatusServiceUnavailable, "counter_store_unavailable",
	"Rate limits cannot be checked right now; try again shortly.")

// reserveProvider reserves one attempt against the provider's own rate limits. It returns
// the hold to settle after the attempt (nil when the provider has no limits), or, when a
// limit is full, why the provider is skipped.
func (s *Server) reserveProvider(ctx context.Context, req *attempt.Request, p *attempt.Provider) (*ctxtoken.Hold, *providerLimited, *apierror.Error) {
	lim := p.Limits
	if lim.IsZero() {
		return nil, nil, nil
	}
	var tokens int64 // counting tokens produces none
	if req.Endpoint.Metered() {
		tokens = pricing.EstimateTokens(int64(len(req.Body))) + pricing.MaxOutputTokens(req.Body, 0)
	}
	cs := counters.LimitCounters(nil, "p:"+p.ID, lim.RPM, lim.RPD, lim.TPM, tokens)
	store := s.cfg.Counters
	slot := "p:" + p.ID
	var adm counters.Admission
	err := errNoStore
	if store != nil {
		adm, err = store.Reserve(ctx, slot, attemptID(req, p), cs)
	}
	if err != nil {
		if store != nil && ctx.Err() == nil {
			s.cfg.Metrics.CounterStoreError("reserve")
		}
		if s.cfg.CountersFailOpen {
			return nil, nil, nil
		}
		if s.storeWarn.Allow() {
			s.cfg.Logger.Error("dispatcher: counter store unavailable; skipping providers with rate limits (fail closed)", "err", err)
		}
		return nil, nil, errCounterStore
	}
	if !adm.OK {
		c := cs[adm.Denied]
		name := counters.LimitName(c)
		s.cfg.Metrics.RateLimited(name)
		return nil, &providerLimited{provider: p.ID, limit: name, value: c.Limit, retryAfter: adm.RetryAfter}, nil
	}
	return &ctxtoken.Hold{Slot: slot, Counters: adm.Counters}, nil, nil
}

var errNoStore = errors.New("no counter store is configured")

// attemptID names one attempt's provider hold: the request id, the provider, the try.
func attemptID(req *attempt.Request, p *attempt.Provider) string {
	return req.RequestID + "." + p.ID + "." + strconv.Itoa(req.Try)
}

// settleProvider corrects a provider hold's tokens with the attempt's real usage; the
// request stays counted either way, since the provider received it.
func (s *Server) settleProvider(ctx context.Context, req *attempt.Request, h *ctxtoken.Hold, res *attempt.Result) {
	if h == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	var actual map[counters.Unit]int64 // nil: the reserved estimate stands
	switch {
	case !res.Committed || !req.Endpoint.Metered():
		actual = map[counters.Unit]int64{counters.UnitTokens: 0}
	case res.Err == nil && (res.Usage.InputTokens > 0 || res.Usage.OutputTokens > 0):
		actual = map[counters.Unit]int64{counters.UnitTokens: res.Usage.InputTokens + res.Usage.OutputTokens}
	}
	if err := s.cfg.Counters.Settle(ctx, h.Slot, attemptID(req, req.Provider), h.Counters, actual); err != nil {
		s.cfg.Metrics.CounterStoreError("settle")
		s.cfg.Logger.Warn("dispatcher: settling a provider's rate limits failed", "request_id", req.RequestID, "err", err)
	}
}

// rateLimited answers 429 when every provider of the chain was skipped for its rate limits.
func (s *Server) rateLimited(o *observation, w http.ResponseWriter, req *attempt.Request, l *providerLimited) {
	secs := max(int64((l.retryAfter+time.Second-1)/time.Second), 1)
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	limit := l.limit + "=" + strconv.FormatInt(l.value, 10)
	if l.limit == "retry-after" { // the provider's own 429 asked for the pause
		limit = "retry-after=" + strconv.FormatInt(secs, 10)
	}
	w.Header().Set(wire.HeaderRateLimit, "PROVIDER:"+l.provider+" "+limit)
	o.fail(w, apierror.New(http.StatusTooManyRequests, "rate_limited",
		"Every provider for this model is rate limited ("+limit+"); retry after "+
			strconv.FormatInt(secs, 10)+" s."), req.ClientFormat)
}

// applyCacheMode applies the request's prompt-cache mode to its body and says on the
// response which mode applied. force adds breakpoints only to Anthropic-format requests,
// the only format that has them; on others respect applies.
func applyCacheMode(w http.ResponseWriter, mode string, f wire.Format, body []byte) []byte {
	if mode == "" {
		return body
	}
	switch config.CacheMode(mode) {
	case config.CacheDisable:
		body, _ = cachectl.Strip(body)
	case config.CacheForce:
		if f != wire.Anthropic {
			mode = string(config.CacheRespect) // nothing to force: OpenAI caches by itself
		} else {
			body, _ = cachectl.Force(body)
		}
	}
	w.Header().Set(wire.HeaderCache, mode)
	return body
}
