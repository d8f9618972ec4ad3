package extproc

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/sluice-gateway/sluice/extproc/policyscan"
	"github.com/sluice-gateway/sluice/internal/apierror"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/counters"
	"github.com/sluice-gateway/sluice/internal/ctxtoken"
	"github.com/sluice-gateway/sluice/internal/pricing"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// Governance: what a key may ask for (tools, MCP servers, URLs, cache mode) and what it may
// spend (budgets, rate limits). Spend is reserved at admission, worst case, against every
// budget and limit that applies, atomically; the dispatcher settles the reservation with
// the real figures when the response ends.

// budgetWarnPercent is the share of a budget from which responses carry a warning.
const budgetWarnPercent = 80

// keyPolicy is a key's compiled request rules; nil fields check nothing.
type keyPolicy struct {
	tools, mcp, urls *config.Rules
}

// budgetRule is one budget that applies to a key.
type budgetRule struct {
	id     string
	scope  string // "TEAM:eng"
	kind   string // "team": the scope's kind, a metric label (never an id)
	window counters.Window
	limit  int64 // nano-USD
	block  bool
}

// compilePolicy compiles a key's rules; the config was validated, so a rule that fails to
// compile here is reported and refuses the key's requests rather than let them through.
func compilePolicy(rules config.PolicyRules) (*keyPolicy, error) {
	if rules.Tools.IsZero() && rules.MCP.IsZero() && rules.URLs.IsZero() {
		return nil, nil
	}
	p := &keyPolicy{}
	var errs []error
	for _, rs := range []struct {
		set config.RuleSet
		dst **config.Rules
	}{{rules.Tools, &p.tools}, {rules.MCP, &p.mcp}, {rules.URLs, &p.urls}} {
		if rs.set.IsZero() {
			continue
		}
		c, err := rs.set.Compile()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		*rs.dst = c
	}
	return p, errors.Join(errs...)
}

// budgetIndex groups the snapshot's budgets by scope, once per compile.
func budgetIndex(r *config.Resources) map[config.Scope][]budgetRule {
	idx := make(map[config.Scope][]budgetRule, len(r.Budgets))
	for _, b := range r.Budgets {
		idx[b.Scope] = append(idx[b.Scope], budgetRule{id: b.ID, scope: b.Scope.String(), kind: strings.ToLower(string(b.Scope.Kind)),
			window: counters.Window(b.Window), limit: int64(b.LimitNanoUSD), block: b.OnBreach == config.BreachBlock})
	}
	return idx
}

// budgetsFor lists the budgets that apply to a key: those of its organization, team,
// project, principal and of the key itself, ordered by id so that the budget a refusal
// names does not depend on map order.
func budgetsFor(idx map[config.Scope][]budgetRule, e *keyEntry) []budgetRule {
	if len(idx) == 0 {
		return nil
	}
	var out []budgetRule
	for _, s := range []config.Scope{{Kind: config.ScopeOrg, ID: e.org}, {Kind: config.ScopeTeam, ID: e.team},
		{Kind: config.ScopeProject, ID: e.project}, {Kind: config.ScopePrincipal, ID: e.principal},
		{Kind: config.ScopeVirtualKey, ID: e.id}} {
		if s.ID != "" {
			out = append(out, idx[s]...)
		}
	}
	slices.SortFunc(out, func(a, b budgetRule) int { return strings.Compare(a.id, b.id) })
	return out
}

// checkPolicy refuses a request that offers a tool, names an MCP server or mentions a URL
// the key's rules do not allow, naming the offending item.
func (r *request) checkPolicy(body []byte) *apierror.Error {
	p := r.key.policy
	if p == nil {
		return nil
	}
	shape := shapeOf(r.route.Endpoint)
	var bad *apierror.Error
	check := func(rules *config.Rules, code, what string) func(string) bool {
		return func(item string) bool {
			if rules.Allows(item) {
				return true
			}
			bad = apierror.New(http.StatusForbidden, code, "This key may not use "+what+" "+strconv.Quote(item)+".")
			return false
		}
	}
	if p.tools != nil {
		policyscan.Tools(body, shape, check(p.tools, "tool_not_allowed", "the tool"))
	}
	if bad == nil && p.mcp != nil {
		policyscan.MCPServers(body, normalized(check(p.mcp, "mcp_not_allowed", "the MCP server")))
	}
	if bad == nil && p.urls != nil {
		policyscan.URLs(body, normalized(check(p.urls, "url_not_allowed", "the URL")))
	}
	return bad
}

// normalized hands fn a URL as a provider's fetcher would resolve it: scheme and host in
// lower case, the host percent-decoded and without a trailing dot or userinfo, so a rule
// on "evil\.example" also stops "https://EVIL.example." and "https://evil%2eexample". Other
// strings (MCP server names) pass as they are.
func normalized(fn func(string) bool) func(string) bool {
	return func(s string) bool {
		i := strings.Index(s, "://")
		if i < 0 || !strings.EqualFold(s[:i], "http") && !strings.EqualFold(s[:i], "https") {
			return fn(s)
		}
		scheme, rest := strings.ToLower(s[:i]), s[i+3:]
		end := strings.IndexAny(rest, "/?#")
		if end < 0 {
			end = len(rest)
		}
		authority, tail := rest[:end], rest[end:]
		if at := strings.LastIndexByte(authority, '@'); at >= 0 {
			authority = authority[at+1:]
		}
		if a, err := url.PathUnescape(authority); err == nil {
			authority = a
		}
		authority = strings.ToLower(authority)
		host, port := authority, ""
		if c := strings.LastIndexByte(authority, ':'); c > strings.LastIndexByte(authority, ']') {
			host, port = authority[:c], authority[c:]
		}
		return fn(scheme + "://" + strings.TrimSuffix(host, ".") + port + tail)
	}
}

var errCacheMode = func() *apierror.Error {
	e := apierror.New(http.StatusBadRequest, "invalid_cache_mode",
		"X-Sluice-Cache must be respect, force or disable.")
	e.Param = wire.HeaderCache
	return e
}()

// cacheMode resolves the request's prompt-cache mode: the client's header, else the key's
// default, else respect.
func (r *request) cacheMode(header string, present bool) (config.CacheMode, *apierror.Error) {
	if present {
		switch m := config.CacheMode(strings.ToLower(strings.TrimSpace(header))); m {
		case config.CacheRespect, config.CacheForce, config.CacheDisable:
			return m, nil
		}
		return "", errCacheMode
	}
	if r.key.cacheMode != "" {
		return r.key.cacheMode, nil
	}
	return config.CacheRespect, nil
}

var (
	errPolicyConfig = apierror.New(http.StatusServiceUnavailable, "policy_unavailable",
		"This key's policy rules cannot be applied; an operator must fix them.")
	errCounterStore = apierror.New(http.StatusServiceUnavailable, "counter_store_unavailable",
		"Spend and rate limits cannot be checked right now; try again shortly.")
	errNotPriced = apierror.New(http.StatusForbidden, "model_not_priced",
		"A budget applies to this key, but the model has no price; an operator must price it on its provider.")
)

// admit reserves the request's worst case against every budget and rate limit of its key.
// It returns the hold for the dispatcher to settle (nil when nothing applies, or when the
// store is down and the gateway is set to fail open) and the budget warning.
func (r *request) admit(body []byte, chain []ctxtoken.Attempt) (*ctxtoken.Hold, string, *apierror.Error) {
	k := r.key
	// Counting tokens costs nothing and produces none: only the key's request limits apply.
	metered := r.route.Endpoint.Metered()
	budgets, lim := k.budgets, k.limits
	if !metered {
		budgets, lim.TPM = nil, 0
	}
	if len(budgets) == 0 && lim.IsZero() {
		return nil, "", nil
	}
	maxOut := pricing.MaxOutputTokens(body, k.maxTokens)
	inBytes := int64(len(body))
	cs := make([]counters.Counter, 0, len(budgets)+3)
	if len(budgets) > 0 {
		worst, ok := r.worstCost(chain, inBytes, maxOut)
		if !ok && k.blocksSpend() {
			e := *errNotPriced
			e.Param = "model"
			return nil, "", &e
		}
		for _, b := range budgets {
			cs = append(cs, counters.Counter{Key: counters.BudgetKey(b.id, b.window), Window: b.window,
				Unit: counters.UnitNanoUSD, Limit: b.limit, Amount: int64(worst), Block: b.block})
		}
	}
	cs = counters.LimitCounters(cs, "k:"+k.id, lim.RPM, lim.RPD, lim.TPM, pricing.EstimateTokens(inBytes)+maxOut)
	store := r.srv.cfg.Counters
	m := r.srv.cfg.Metrics
	if store == nil {
		return r.storeDown(errors.New("no counter store is configured"), cs, maxOut)
	}
	adm, err := store.Reserve(r.ctx, counters.OrgSlot(k.org), r.id, cs)
	if err != nil {
		if errors.Is(err, counters.ErrInvalid) || errors.Is(err, counters.ErrIDReused) {
			// A bug, not an outage: never a reason to admit unchecked.
			return nil, "", apierror.As(err)
		}
		if r.ctx.Err() == nil { // a client that left is not a store error
			m.CounterStoreError("reserve")
		}
		return r.storeDown(err, cs, maxOut)
	}
	if !adm.OK {
		c := cs[adm.Denied]
		if c.Unit == counters.UnitTokens && c.Amount > c.Limit {
			// No window will ever fit it: retrying is pointless.
			e := apierror.New(http.StatusBadRequest, "exceeds_rate_limit",
				"This request alone may use "+strconv.FormatInt(c.Amount, 10)+" tokens (its input and max_tokens), over this key's tpm="+
					strconv.FormatInt(c.Limit, 10)+"; lower max_tokens.")
			e.Param = "max_tokens"
			return nil, "", e
		}
		if c.Unit == counters.UnitNanoUSD {
			b := k.budgets[adm.Denied]
			m.BudgetDenied(b.kind, string(b.window))
			e := apierror.New(http.StatusPaymentRequired, "budget_exceeded",
				"Budget "+b.id+" ("+b.scope+", "+string(b.window)+") is exhausted: limit $"+config.NanoUSD(b.limit).String()+".")
			return nil, "", e
		}
		name, secs := counters.LimitName(c), strconv.FormatInt(adm.RetryAfterSeconds(), 10)
		m.RateLimited(name)
		r.extraHeaders = append(r.extraHeaders, [2]string{"retry-after", secs},
			[2]string{wire.HeaderRateLimit, "VIRTUAL_KEY:" + k.id + " " + name + "=" + strconv.FormatInt(c.Limit, 10)})
		return nil, "", apierror.New(http.StatusTooManyRequests, "rate_limited",
			"Rate limit "+name+"="+strconv.FormatInt(c.Limit, 10)+" of this key reached; retry after "+secs+" s.")
	}
	var warn []string
	for i, b := range budgets {
		if b.limit <= 0 {
			continue
		}
		if pct := adm.Committed[i] * 100 / b.limit; pct >= budgetWarnPercent {
			warn = append(warn, b.scope+":"+strconv.FormatInt(pct, 10))
			m.BudgetWarning(b.kind)
		}
	}
	return &ctxtoken.Hold{Slot: counters.OrgSlot(k.org), Counters: adm.Counters, MaxOutput: maxOut}, strings.Join(warn, ", "), nil
}

// storeDown applies the configured failure mode when the counter store cannot answer.
// Failing open, the request still carries its counters (in the windows of now), so the
// dispatcher's settle debits its spend once the store answers again: nothing is lost
// beyond the check itself.
func (r *request) storeDown(err error, cs []counters.Counter, maxOut int64) (*ctxtoken.Hold, string, *apierror.Error) {
	if r.srv.cfg.CountersFailOpen {
		if r.srv.storeWarn.Allow() {
			r.srv.cfg.Logger.Warn("extproc: counter store unavailable; admitting without budgets or rate limits (fail open)", "err", err)
		}
		now := r.srv.cfg.Now()
		for i := range cs {
			start, _ := cs[i].Window.Bounds(now)
			cs[i].Start = start.Unix()
		}
		return &ctxtoken.Hold{Slot: counters.OrgSlot(r.key.org), Counters: cs, MaxOutput: maxOut}, "", nil
	}
	if r.srv.storeWarn.Allow() {
		r.srv.cfg.Logger.Error("extproc: counter store unavailable; refusing requests under budgets or rate limits (fail closed)", "err", err)
	}
	return nil, "", errCounterStore
}

// blocksSpend reports whether any budget of the key blocks.
func (k *keyEntry) blocksSpend() bool {
	for _, b := range k.budgets {
		if b.block {
			return true
		}
	}
	return false
}

// worstCost is the dearest the request can cost on any provider of its chain: every input
// byte counted as a token at the dearest input rate (a token is at least one byte) plus the
// output it may produce. ok is false when a provider of the chain has no price for its model.
func (r *request) worstCost(chain []ctxtoken.Attempt, inBytes, maxOut int64) (config.NanoUSD, bool) {
	var worst config.NanoUSD
	ok := true
	for _, a := range chain {
		p := r.st.providers[a.Provider]
		if p == nil {
			continue
		}
		price, found := pricing.Resolve(r.srv.prices, p.typ, p.prices, a.Model)
		if !found {
			ok = false
			continue
		}
		worst = max(worst, price.WorstCase(inBytes, maxOut))
	}
	return worst, ok
}

// release gives back a hold whose request will not reach the dispatcher.
func (r *request) release(h *ctxtoken.Hold) {
	if h == nil {
		return
	}
	if err := r.srv.cfg.Counters.Release(r.ctx, h.Slot, r.id, h.Counters); err != nil {
		r.srv.cfg.Metrics.CounterStoreError("release")
		r.srv.cfg.Logger.Warn("extproc: releasing a hold", "request_id", r.id, "err", err)
	}
}
