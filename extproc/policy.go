package extproc

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/sluice-gateway/sluice/extproc/guardrail"
	"github.com/sluice-gateway/sluice/internal/apierror"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/ctxtoken"
	"github.com/sluice-gateway/sluice/internal/pricing"
	"github.com/sluice-gateway/sluice/internal/vkey"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// compiled is the read-only form of the config that the hot path uses. It is built off the
// hot path by compile and published with an atomic pointer swap.
type compiled struct {
	// keys maps every accepted secret hash to its key: the current one, and during a
	// rotation's grace the previous one.
	keys map[vkey.Digest]*keyRef
	// providers holds every dispatchable provider, for prices.
	providers map[string]*providerEntry
}

// keyRef is one accepted hash of a key.
type keyRef struct {
	key *keyEntry
	// until, when set, is when this hash stops working (a rotated-out secret).
	until time.Time
}

type providerEntry struct {
	id     string
	typ    string            // config.ProviderType
	models []string          // empty: serves any model
	prices pricing.Overrides // the provider's own prices, over the bundled table
}

// serves reports whether the provider serves model.
func (p *providerEntry) serves(model string) bool {
	return len(p.models) == 0 || slices.Contains(p.models, model)
}

type keyEntry struct {
	id        string
	status    config.KeyStatus
	expires   time.Time // zero: never
	org       string
	team      string
	project   string
	principal string
	chain     []*providerEntry
	allowed   []string // exact names and "prefix*"; empty allows all
	aliases   map[string]config.Alias
	// GET /v1/models bodies, rendered once at compile time, and each model's own.
	modelsOpenAI    []byte
	modelsAnthropic []byte
	modelOpenAI     map[string][]byte
	modelAnthropic  map[string][]byte
	guards          *keyGuards // nil: the key runs no guardrail

	// Governance.
	policy    *keyPolicy // nil: no tool, MCP or URL rules
	policyErr error      // the rules did not compile: requests are refused until fixed
	budgets   []budgetRule
	limits    config.RateLimits
	cacheMode config.CacheMode
	maxTokens int64              // assumed output without max_tokens; 0: pricing.DefaultMaxTokens
	fallback  *ctxtoken.Fallback // nil: the gateway's default
}

// compile builds the hot path's view of a snapshot. A key or provider that does not decode
// is left out (and reported), never allowed to take the rest down.
func compile(snap *config.Snapshot, gopts guardrail.Options) (*compiled, error) {
	r, decodeErr := snap.Decode()
	guards, badGuards := compileGuardrails(r, gopts)
	providers := make(map[string]*providerEntry, len(r.Providers))
	for id, p := range r.Providers {
		if p.Type.Dispatchable() {
			providers[id] = &providerEntry{id: id, typ: string(p.Type), models: p.Models, prices: p.Pricing}
		}
	}
	budgets := budgetIndex(r)
	out := &compiled{keys: make(map[vkey.Digest]*keyRef, len(r.Keys)), providers: providers}
	var errs []error
	if decodeErr != nil {
		errs = append(errs, decodeErr)
	}
	for _, err := range badGuards {
		errs = append(errs, err)
	}
	for _, k := range r.Keys {
		d, err := vkey.ParseDigest(k.Hash)
		if err != nil {
			errs = append(errs, fmt.Errorf("virtual key %s: %w", k.ID, err))
			continue
		}
		e := &keyEntry{id: k.ID, status: k.Status, principal: k.PrincipalID,
			allowed: k.Config.ModelsAllowed, aliases: k.Config.ModelAliases}
		if k.ExpiresAt != nil {
			e.expires = *k.ExpiresAt
		}
		e.setTenant(r, k.Scope)
		e.attachGuards(snap, r, k, guards, badGuards)
		if e.guards != nil && e.guards.err != nil {
			errs = append(errs, fmt.Errorf("virtual key %s: refused until fixed: %w", k.ID, e.guards.err))
		}
		e.chain = keyChain(r, k, providers)
		e.budgets, e.limits = budgetsFor(budgets, e), k.Config.RateLimits
		e.cacheMode, e.maxTokens = k.Config.CacheMode, k.Config.DefaultMaxTokens
		if fb := k.Config.Fallback; fb.MaxAttempts > 0 || fb.Retries > 0 || len(fb.Triggers) > 0 {
			e.fallback = &ctxtoken.Fallback{MaxAttempts: fb.MaxAttempts, Retries: fb.Retries}
			for _, t := range fb.Triggers {
				e.fallback.Triggers = append(e.fallback.Triggers, string(t))
			}
		}
		if e.policy, e.policyErr = compilePolicy(k.Config.PolicyRules); e.policyErr != nil {
			errs = append(errs, fmt.Errorf("virtual key %s: refused until fixed: policy_rules: %w", k.ID, e.policyErr))
		}
		e.modelsOpenAI, e.modelsAnthropic, e.modelOpenAI, e.modelAnthropic = renderModels(e.listModels())
		out.keys[d] = &keyRef{key: e}
		if k.PreviousHash != "" && k.PreviousHashValidUntil != nil {
			if pd, err := vkey.ParseDigest(k.PreviousHash); err == nil {
				out.keys[pd] = &keyRef{key: e, until: *k.PreviousHashValidUntil}
			}
		}
	}
	return out, errors.Join(errs...)
}

// setTenant fills the key's tenant ids from its scope and the scope's known ancestors.
func (e *keyEntry) setTenant(r *config.Resources, s config.Scope) {
	switch s.Kind {
	case config.ScopeOrg:
		e.org = s.ID
	case config.ScopeTeam:
		e.team = s.ID
		if t := r.Teams[s.ID]; t != nil {
			e.org = t.OrgID
		}
	case config.ScopeProject:
		e.project = s.ID
		if p := r.Projects[s.ID]; p != nil {
			e.team, e.org = p.TeamID, p.OrgID
		}
	case config.ScopePrincipal:
		if e.principal == "" {
			e.principal = s.ID
		}
		if p := r.Principals[s.ID]; p != nil {
			e.org = p.OrgID
		}
	}
}

// keyChain is the key's provider order: its routing policy's list, or else every provider
// visible from its scope (its own scope or an ancestor's), by fallback priority then
// creation time; then narrowed to providers_allowed.
func keyChain(r *config.Resources, k *config.VirtualKey, providers map[string]*providerEntry) []*providerEntry {
	var ids []string
	if rp := r.RoutingPolicies[k.RoutingPolicyID]; rp != nil {
		ids = rp.Providers
	} else {
		visible := map[config.Scope]bool{k.Scope: true}
		for _, a := range ancestors(r, k.Scope) {
			visible[a] = true
		}
		var ps []*config.ModelProvider
		for _, p := range r.Providers {
			if visible[p.Scope] {
				ps = append(ps, p)
			}
		}
		sort.Slice(ps, func(i, j int) bool {
			a, b := ps[i], ps[j]
			if a.FallbackPriority != b.FallbackPriority {
				return a.FallbackPriority < b.FallbackPriority
			}
			if !a.CreatedAt.Equal(b.CreatedAt) {
				return a.CreatedAt.Before(b.CreatedAt)
			}
			return a.ID < b.ID
		})
		for _, p := range ps {
			ids = append(ids, p.ID)
		}
	}
	var chain []*providerEntry
	for _, id := range ids {
		p := providers[id]
		if p == nil || len(k.Config.ProvidersAllowed) > 0 && !slices.Contains(k.Config.ProvidersAllowed, id) {
			continue
		}
		chain = append(chain, p)
	}
	return chain
}

// ancestors lists the scopes above s that the snapshot knows of.
func ancestors(r *config.Resources, s config.Scope) []config.Scope {
	org := func(id string) config.Scope { return config.Scope{Kind: config.ScopeOrg, ID: id} }
	switch s.Kind {
	case config.ScopeTeam:
		if t := r.Teams[s.ID]; t != nil {
			return []config.Scope{org(t.OrgID)}
		}
	case config.ScopeProject:
		if p := r.Projects[s.ID]; p != nil {
			out := []config.Scope{org(p.OrgID)}
			if p.TeamID != "" {
				out = append(out, config.Scope{Kind: config.ScopeTeam, ID: p.TeamID})
			}
			return out
		}
	case config.ScopePrincipal:
		if p := r.Principals[s.ID]; p != nil {
			return []config.Scope{org(p.OrgID)}
		}
	}
	return nil
}

// allows reports whether the key may call model (after alias resolution).
func (k *keyEntry) allows(model string) bool {
	if len(k.allowed) == 0 {
		return true
	}
	for _, a := range k.allowed {
		if a == "*" || a == model || strings.HasSuffix(a, "*") && strings.HasPrefix(model, a[:len(a)-1]) {
			return true
		}
	}
	return false
}

// servesEndpoint reports whether a provider can serve endpoint e: natively, or through the
// translation lane. Embeddings and compaction exist only in OpenAI's format; a provider
// the translation lane does not know (Azure) serves only its own format; the gateway
// counts tokens itself for any provider that cannot.
func (p *providerEntry) servesEndpoint(e wire.Endpoint) bool {
	t := config.ProviderType(p.typ)
	switch e {
	case wire.Embeddings, wire.ResponsesCompact:
		return t.Speaks(wire.OpenAI)
	case wire.Messages, wire.CountTokens:
		return t.Speaks(wire.Anthropic) || t.Translatable() || e == wire.CountTokens
	}
	return t.Speaks(wire.OpenAI) || t.Translatable()
}

// route resolves the requested model to the provider chain: each provider that can serve the
// model at endpoint e, with the name that provider must receive.
func (k *keyEntry) route(model string, e wire.Endpoint) []ctxtoken.Attempt {
	alias, isAlias := k.aliases[model]
	chain := make([]ctxtoken.Attempt, 0, len(k.chain))
	for _, p := range k.chain {
		m := model
		if isAlias {
			var ok bool
			if m, ok = alias.For(p.id); !ok {
				continue
			}
		}
		// A per-provider alias names each provider's model explicitly; a plain name (or a
		// one-name alias) goes only to providers that serve it.
		if !k.allows(m) || (alias.ByProvider == nil && !p.serves(m)) || !p.servesEndpoint(e) {
			continue
		}
		chain = append(chain, ctxtoken.Attempt{Provider: p.id, Model: m})
	}
	return chain
}

// listModels is what GET /v1/models shows the key: its aliases, then every model a provider
// on its chain lists, then its exact allowed names, filtered by what it may call.
func (k *keyEntry) listModels() []string {
	seen := map[string]bool{}
	var out []string
	add := func(m string) {
		if m != "" && !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	for a := range k.aliases {
		if len(k.route(a, wire.ChatCompletions)) > 0 {
			add(a)
		}
	}
	for _, p := range k.chain {
		for _, m := range p.models {
			if k.allows(m) {
				add(m)
			}
		}
	}
	for _, a := range k.allowed {
		if !strings.HasSuffix(a, "*") {
			add(a)
		}
	}
	sort.Strings(out)
	return out
}

// renderModels renders the model list in the OpenAI and the Anthropic shapes, and each
// model's own object for GET /v1/models/{id}.
func renderModels(models []string) (openAI, anthropic []byte, oneOpenAI, oneAnthropic map[string][]byte) {
	type oaModel struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	type anModel struct {
		Type        string `json:"type"`
		ID          string `json:"id"`
		DisplayName string `json:"display_name"`
		CreatedAt   string `json:"created_at"`
	}
	oa := struct {
		Object string    `json:"object"`
		Data   []oaModel `json:"data"`
	}{Object: "list", Data: []oaModel{}}
	an := struct {
		Data    []anModel `json:"data"`
		HasMore bool      `json:"has_more"`
		FirstID *string   `json:"first_id"`
		LastID  *string   `json:"last_id"`
	}{Data: []anModel{}}
	epoch := time.Unix(0, 0).UTC().Format(time.RFC3339)
	oneOpenAI, oneAnthropic = make(map[string][]byte, len(models)), make(map[string][]byte, len(models))
	for _, m := range models {
		o, a := oaModel{ID: m, Object: "model", OwnedBy: "sluice"}, anModel{Type: "model", ID: m, DisplayName: m, CreatedAt: epoch}
		oa.Data, an.Data = append(oa.Data, o), append(an.Data, a)
		oneOpenAI[m], _ = json.Marshal(o)    // plain strings: cannot fail
		oneAnthropic[m], _ = json.Marshal(a) // plain strings: cannot fail
	}
	if n := len(models); n > 0 {
		an.FirstID, an.LastID = &models[0], &models[n-1]
	}
	openAI, _ = json.Marshal(oa)    // plain strings: cannot fail
	anthropic, _ = json.Marshal(an) // plain strings: cannot fail
	return openAI, anthropic, oneOpenAI, oneAnthropic
}

// model answers GET /v1/models/{id}: the model's object when the key may call it (an alias
// included), else 404 model_not_found, so a client cannot probe what others may use.
func (r *request) model(id string) *extprocv3.ProcessingResponse {
	one := r.key.modelOpenAI
	if r.route.Format == wire.Anthropic {
		one = r.key.modelAnthropic
	}
	if b, ok := one[id]; ok {
		return r.immediate(http.StatusOK, b, "")
	}
	// A model the key may call without its being listed (a prefix* rule on a provider that
	// serves any model) is rendered now, off the precomputed path.
	if r.key.allows(id) && len(r.key.route(id, wire.ChatCompletions)) > 0 {
		_, _, oa, an := renderModels([]string{id})
		if r.route.Format == wire.Anthropic {
			return r.immediate(http.StatusOK, an[id], "")
		}
		return r.immediate(http.StatusOK, oa[id], "")
	}
	e := apierror.New(http.StatusNotFound, "model_not_found", "This key has no model "+strconv.Quote(id)+".")
	e.Param = "model"
	return r.reject(e)
}
