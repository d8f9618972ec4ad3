package extproc

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/ctxtoken"
	"github.com/sluice-gateway/sluice/internal/vkey"
)

// compiled is the read-only form of the config that the hot path uses. It is built off the
// hot path by compile and published with an atomic pointer swap.
type compiled struct {
	keys map[vkey.Digest]*keyEntry
}

type providerEntry struct {
	id     string
	models []string // empty: serves any model
}

// serves reports whether the provider serves model.
func (p *providerEntry) serves(model string) bool {
	return len(p.models) == 0 || slices.Contains(p.models, model)
}

type keyEntry struct {
	digest          vkey.Digest
	id              string
	org             string
	team            string
	project         string
	principal       string
	chain           []*providerEntry
	allowed         []string // exact names and "prefix*"; empty allows all
	aliases         map[string]config.Alias
	modelsOpenAI    []byte // GET /v1/models bodies, rendered once at compile time
	modelsAnthropic []byte
}

func compile(c *config.Config, h *vkey.Hasher) (*compiled, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	providers := make(map[string]*providerEntry, len(c.Providers))
	order := make([]*providerEntry, 0, len(c.Providers))
	for _, p := range c.Providers {
		e := &providerEntry{id: p.ID, models: p.Models}
		providers[p.ID] = e
		order = append(order, e)
	}
	out := &compiled{keys: make(map[vkey.Digest]*keyEntry, len(c.Keys))}
	for _, k := range c.Keys {
		d, err := vkey.ParseDigest(k.Hash)
		if err != nil { // Validate already checked; keep the guard local
			return nil, fmt.Errorf("key %q: %w", k.ID, err)
		}
		e := &keyEntry{
			digest: d, id: k.ID, org: k.OrgID, team: k.TeamID, project: k.ProjectID,
			principal: k.PrincipalID, allowed: k.ModelsAllowed, aliases: k.ModelAliases,
		}
		if len(k.Providers) == 0 {
			e.chain = order
		} else {
			for _, id := range k.Providers {
				e.chain = append(e.chain, providers[id])
			}
		}
		e.modelsOpenAI, e.modelsAnthropic = renderModels(e.listModels())
		out.keys[d] = e
	}
	return out, nil
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

// route resolves the requested model to the provider chain: each provider that can serve the
// model, with the name that provider must receive.
func (k *keyEntry) route(model string) []ctxtoken.Attempt {
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
		if !k.allows(m) || (alias.ByProvider == nil && !p.serves(m)) {
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
		if len(k.route(a)) > 0 {
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

// renderModels renders the model list in the OpenAI and the Anthropic shapes.
func renderModels(models []string) (openAI, anthropic []byte) {
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
	for _, m := range models {
		oa.Data = append(oa.Data, oaModel{ID: m, Object: "model", OwnedBy: "sluice"})
		an.Data = append(an.Data, anModel{Type: "model", ID: m, DisplayName: m, CreatedAt: epoch})
	}
	if n := len(models); n > 0 {
		an.FirstID, an.LastID = &models[0], &models[n-1]
	}
	openAI, _ = json.Marshal(oa)    // plain strings: cannot fail
	anthropic, _ = json.Marshal(an) // plain strings: cannot fail
	return openAI, anthropic
}
